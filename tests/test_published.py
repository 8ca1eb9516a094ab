"""The published figures: every accuracy agrees with the cell it was read as, names its source, recipe and the
argse expert it is held against; a results page on CIFAR-LT sets each expert beside them."""

import re

import pytest

from argse.experts import list_experts
from argse.reports.published import CIFAR10_CLASSES, FIGURES, accuracy_markdown, comparison_markdown, dataset_of


def test_accuracies_follow_from_the_cells_read():
    for f in FIGURES:
        kind, number = re.match(r"(error|accuracy) (\d+\.\d+)", f.read).groups()
        want = 100 - float(number) if kind == "error" else float(number) * (100 if float(number) < 1 else 1)
        assert f.balanced_acc == pytest.approx(want, abs=0.005), f


def test_every_figure_names_its_source_recipe_and_a_registered_expert():
    assert all(f.source.cite and f.source.recipe and 0 < f.balanced_acc < 100 for f in FIGURES)
    assert {f.expert.split(":")[0] for f in FIGURES} <= set(list_experts())
    table = accuracy_markdown("CIFAR-10-LT")
    rows = [x for x in table.splitlines() if x.startswith("| CIFAR")]
    assert len(rows) == sum(f.dataset == "CIFAR-10-LT" for f in FIGURES) and "CIFAR-100-LT" not in table


def test_only_a_cifar_resnet32_run_at_if_100_is_held_against_the_figures():
    assert dataset_of("imagefolder_lt", CIFAR10_CLASSES, 100, "resnet_cifar", 32) == "CIFAR-10-LT"
    assert dataset_of("cifar100_lt", [f"c{i}" for i in range(100)], 100, "resnet_cifar", 32) == "CIFAR-100-LT"
    assert dataset_of("imagefolder_lt", [f"c{i}" for i in range(10)], 100, "resnet_cifar", 32) is None
    assert dataset_of("synthetic_lt", [f"class_{i}" for i in range(10)], 100, "resnet_cifar", 32) is None
    assert dataset_of("cifar10_lt", CIFAR10_CLASSES, 50, "resnet_cifar", 32) is None
    assert dataset_of("cifar10_lt", CIFAR10_CLASSES, 100, "resnet_cifar", 20) is None


def test_comparison_sets_each_expert_beside_its_methods_figures_with_the_difference():
    text = comparison_markdown("CIFAR-10-LT", {"ce": (70.0, "70.00 [68.0, 72.0]"), "decoupling:crt": (75.0, "75")})
    rows = [x for x in text.splitlines() if x.startswith("| ce |") or x.startswith("| decoupling")]
    assert len(rows) == 4 + 1  # ce: Bag of Tricks' two, Menon et al.'s paper and code; decoupling: cRT only
    bot = next(x for x in rows if "| Baseline (CE) |" in x)
    assert "| 70.36 | -0.36 | [1] error 29.64 |" in bot
    crt = next(x for x in rows if x.startswith("| decoupling:crt |"))
    assert "| cRT | 74.99 | +0.01 | [1] error 25.01 |" in crt
    assert "- [1] Zhang et al. 2021 (Bag of Tricks, AAAI)" in text and "Recipe: ResNet-32, 200 epochs" in text
    assert "| LWS |" not in text and "| logit_adjust |" not in text  # only the experts given
