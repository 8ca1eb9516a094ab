"""argse.table2 on hand-made logits: every Table-2 row, CSS from its runs, the page, and its refusals."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import torch

from argse import table2
from argse.config.loading import load_run_config
from argse.config.schema import changed
from argse.core import terminal
from argse.core.errors import ArgseError
from argse.data.groups import head_tail_groups
from argse.data.logits import LogitsFile
from argse.data.metrics import source_reports
from argse.papers.narasimhan2024 import (
    SeedTable,
    css_aurcs,
    css_config,
    css_point,
    dro_config,
    parse_seeds,
    seed_configs,
)
from argse.papers.table2_page import PAPER_TABLE2, orderings, paper_dataset, scale_line
from argse.stages.gate import build_gate, reader_of
from argse.stages.run import RunStages
from studies.logit_factory import write_run
from tests.tiny_run import QUICK_EVALUATION

COUNTS = [100, 50, 10, 5]  # tail (<= 10 images): classes 2 and 3
# group_dro's grid points besides the team's own (eta 0.001, C 1; strength 2.5): the strongest is picked on val
DRO_GRID = {(0.0005, 1.0): 1.0, (0.0005, 2.0): 3.0, (0.001, 2.0): 2.0}


def _model(strength: float, offset: float = 0.0):
    def fn(labels, g):
        return torch.randn(len(labels), 4, generator=g) + strength * torch.nn.functional.one_hot(labels, 4) + offset

    return fn


def _sets(tmp_path: Path) -> list[str]:
    return [
        f"output_dir={tmp_path / 'o'}",
        "name=t",
        "data.tail_max_count=10",
        "experts=[ce,logit_adjust,group_dro]",
        "gating.epochs=20",
        "recipes.css.costs=[0.5,0.9]",
        *QUICK_EVALUATION,
    ]


def _write_runs(tmp_path: Path, seeds: list[int], counts: list[int] = COUNTS) -> None:
    """Each seed's team and gate, and one CSS run per cost: the more the cost, the higher CSS's margins. Each is
    imported under the settings the tabulation gives (its data, seed and CSS recipe), so that it finds them."""
    out = tmp_path / "o"
    for cfg in seed_configs(None, _sets(tmp_path), seeds):
        sets = ["data.tail_max_count=10", "recipes.css.costs=[0.5,0.9]", f"seed={cfg.seed}"]
        write_run(out / cfg.name, {"ce": _model(1.0), "logit_adjust": _model(2.0), "group_dro": _model(2.5)},
                  4, COUNTS, seed=cfg.seed, overrides=sets)  # fmt: skip
        build_gate(cfg, terminal.console())
        for (step, adjustment), strength in DRO_GRID.items():  # Chow [DRO]'s other grid points, one run each
            write_run(out / f"{cfg.name}_dro{step:g}_{adjustment:g}", {"group_dro": _model(strength)}, 4, counts,
                      seed=cfg.seed, overrides=[*sets, f"recipes.group_dro.dro_step={step:g}",
                                                f"recipes.group_dro.dro_adjustment={adjustment:g}"])  # fmt: skip
        for cost, offset in ((0.5, -1.5), (0.9, -0.3)):
            write_run(out / f"{cfg.name}_css{cost:g}", {"css": _model(2.0, offset)}, 4, counts, seed=cfg.seed,
                      overrides=[*sets, f"recipes.css.cost={cost:g}"])  # fmt: skip


def _argv(tmp_path: Path, *extra: str) -> list[str]:
    """The tabulation of the hand-made runs; ``extra`` comes last, so its --set wins."""
    sets = [x for s in _sets(tmp_path) for x in ("--set", s)]
    return ["--skip-training", "--out", str(tmp_path / "page.md"), *sets, *extra]


def test_table2_page_over_seeds(tmp_path):
    _write_runs(tmp_path, [0, 1])
    assert table2.main(_argv(tmp_path, "--seeds", "0,1")) == 0
    page = (tmp_path / "page.md").read_text()
    for row in ("| Chow | ce, rejector chow |", "| CSS | css (one model per cost) |",
                "| Chow [BCE] | logit_adjust, rejector chow |", "| Chow [DRO] | group_dro, rejector chow |",
                "| Plug-in [Balanced] | ce, rejector plugin_balanced |", "| Plug-in [Worst] | ce, rejector plugin_worst |",
                "| gated team, Plug-in [Worst] | gating, rejector plugin_worst |"):  # fmt: skip
        line = next(x for x in page.splitlines() if x.startswith(row))
        assert line.count("±") == 4  # mean ± sd in every AURC column, over two seeds
    assert "## Test prior train, protocol paper" in page and "## Test prior train, protocol argse" in page
    assert "is not one of the paper's" in page  # synthetic data: no paper columns
    assert page.splitlines()[2].startswith("**Seeds 0, 1, ")  # the first statement: how many seeds, how long
    assert re.search(r"Made by `python -m argse.table2[^`]*` at commit [0-9a-f]{7}", page)  # provenance
    css = [x for x in page.splitlines() if x.startswith("| 0.5 |") or x.startswith("| 0.9 |")]
    rate = [float(x.split("|")[2].split("±")[0]) for x in css]
    assert len(css) == 2 and rate[0] > rate[1] > 0  # the lower cost (and lower margins) abstains more
    assert page.count("- PASS") + page.count("- FAIL") == 16  # the paper's 8 claims in each of the two views
    assert "Every seed's models ran these recipes, only the seed (and group_dro's eta and C" in page
    # The first seed's further figures, each with its bootstrap interval, and the protocols' paired difference.
    assert "## More figures, test prior train, protocol argse (seed 0)" in page
    line = next(x for x in page.splitlines() if x.startswith("| Plug-in [Worst] |") and "[" in x and "±" not in x)
    assert line.count("[") == 7  # the label's own, then augrc, e_aurc, risk@coverage=1 for balanced and worst
    diff = page.split("## argse's protocol against the paper's (seed 0)")[1].split("##")[0]
    assert "| Chow [DRO] |" in diff and sum(x.startswith("|---") for x in diff.splitlines()) == 1


def test_chow_dro_is_measured_on_the_grid_point_of_lowest_worst_group_error_on_val(tmp_path):
    _write_runs(tmp_path, [0])
    assert table2.main(_argv(tmp_path, "--seeds", "0")) == 0
    page = (tmp_path / "page.md").read_text()
    grid = page.split("## Chow [DRO]: eta and C picked on val")[1].split("##")[0].splitlines()
    rows = [x for x in grid if re.match(r"\| 0\.\d+ \| \d \|", x)]
    assert [x.split(" | ")[:2] for x in rows] == [
        ["| 0.001", "1"],
        ["| 0.0005", "1"],
        ["| 0.0005", "2"],
        ["| 0.001", "2"],
    ]
    assert [x for x in rows if "(picked)" in x] == [rows[2]]  # the strongest model (DRO_GRID)
    # the page's accuracies of group_dro are the picked model's, not the team's own
    acc = next(
        x for x in page.split("## The models without rejection")[1].splitlines() if x.startswith("| group_dro |")
    )
    cfg = seed_configs(None, _sets(tmp_path), [0])[0]
    picked, team = (reader_of(RunStages(c), ["group_dro"], ["test"]).read("group_dro", "test")
                    for c in (dro_config(cfg, 0.0005, 2.0), cfg))  # fmt: skip
    reports = source_reports([picked], cfg.data)
    assert f"{100 * reports['group_dro']['balanced_acc']:.2f}" == acc.split("|")[2].split()[0]
    assert picked.logits.argmax(1).ne(team.logits.argmax(1)).any()  # the two models' accuracies could differ


def test_a_missing_grid_point_of_chow_dro_names_the_command_that_trains_it(tmp_path):
    _write_runs(tmp_path, [0])
    shutil.rmtree(tmp_path / "o" / "t_seed0_dro0.001_2")
    with pytest.raises(ArgseError, match=r"^Chow \[DRO\]'s grid point eta 0\.001, C 2 has no trained model \(run "
                       r"t_seed0_dro0\.001_2\): run argse\.table2 without --skip-training, or python -m argse\.train_"
                       r"experts --experts group_dro --set name=t_seed0_dro0\.001_2 "):  # fmt: skip
        table2.main(_argv(tmp_path, "--seeds", "0"))


def test_css_run_from_other_splits_is_refused(tmp_path):
    _write_runs(tmp_path, [0], counts=[100, 50, 10, 6])
    with pytest.raises(ArgseError, match=r"exported from other splits than t_seed0"):
        table2.main(_argv(tmp_path, "--seeds", "0"))


def test_config_without_the_tables_experts_is_refused(tmp_path):
    _write_runs(tmp_path, [0])
    with pytest.raises(
        ArgseError, match=r"the config's experts lack group_dro: set experts=\[ce,logit_adjust,group_dro\]"
    ):
        table2.main(_argv(tmp_path, "--seeds", "0", "--set", "experts=[ce,logit_adjust]"))


@pytest.mark.parametrize("text", ["0,a", "1,1", "-1"])
def test_bad_seeds_are_one_sentence(text):
    with pytest.raises(ArgseError, match=r"^--seeds must be distinct non-negative integers"):
        parse_seeds(text)


def _file(logits, labels, counts):
    n = len(labels)
    return LogitsFile(Path("x"), torch.tensor(logits), torch.tensor(labels), torch.arange(n), "css", "d", "test",
                      len(counts), 1.0, counts, "sha", {})  # fmt: skip


def test_css_point_by_hand():
    """Four samples, class 0 head (100 images), class 1 tail (5): sample 1 abstains, sample 3 is wrong."""
    f = _file([[1.0, -1.0], [-1.0, -2.0], [-1.0, 0.5], [0.2, 0.1]], [0, 0, 1, 1], [100, 5])
    groups = head_tail_groups(torch.tensor([100, 5]), 10)
    point = css_point(f, groups, "balanced")
    assert point == pytest.approx({"rejection_rate": 0.25, "balanced": 0.25, "worst_group": 0.5})
    # training prior: head samples weigh 100/105 / (1/2) each, tail 5/105 / (1/2); one head sample abstains
    point = css_point(f, groups, "train")
    assert point == pytest.approx({"rejection_rate": 100 / 210, "balanced": 0.25, "worst_group": 0.5})


def test_css_aurc_interpolates_and_holds_the_end_points():
    points = [{"rejection_rate": 0.5, "balanced": 0.2, "worst_group": 0.3},
              {"rejection_rate": 0.1, "balanced": 0.4, "worst_group": 0.3}]  # fmt: skip
    # balanced: 0.4 on [0, 0.1], 0.4 -> 0.2 on [0.1, 0.5], 0.2 on [0.5, 0.8]: (0.04 + 0.12 + 0.06) / 0.8
    aurcs = css_aurcs(points)
    assert aurcs == pytest.approx({"balanced": 0.275, "worst_group": 0.3, "balanced@reached": 0.275,
                                   "worst_group@reached": 0.3})  # fmt: skip


def test_paper_dataset_is_recognised_from_the_config():
    assert paper_dataset(load_run_config("configs/cifar100_lt_narasimhan2024.yaml")) == "CIFAR-100-LT"
    assert paper_dataset(load_run_config("configs/imagenet_lt_narasimhan2024.yaml")) == "ImageNet-LT"
    assert paper_dataset(load_run_config("configs/inat2018_narasimhan2024.yaml")) == "iNaturalist 2018"
    assert paper_dataset(load_run_config("configs/cifar10_lt_table2.yaml")) is None
    assert PAPER_TABLE2["CIFAR-100-LT"]["Plug-in [Worst]"] == (0.287, 0.008, 0.321, 0.018)


def test_orderings_on_the_papers_own_cifar100_figures_all_pass():
    """The checks read the paper's claims: fed the paper's own CIFAR-100-LT means, every one holds."""

    view = ("train", "paper")
    aurcs = {label: {"balanced": v[0], "worst_group": v[2]} for label, v in PAPER_TABLE2["CIFAR-100-LT"].items()}
    lines = orderings([SeedTable({view: aurcs}, [], {})], view)
    assert len(lines) == 8 and all(x.startswith("- PASS") for x in lines), lines
    aurcs["Chow [DRO]"]["worst_group"] = 0.2  # the plug-in now worse than Chow [DRO], with no draws to excuse it
    assert orderings([SeedTable({view: aurcs}, [], {})], view)[-1].startswith("- FAIL")


def test_the_papers_imagenet_column_passes_only_within_its_noise():
    """ImageNet-LT: Plug-in [Worst] 0.213 against Chow [DRO] 0.211 on worst-group AURC. With draws whose paired
    interval holds 0 the plug-in is "comparable"; without any, strictly above, it fails."""
    import numpy as np

    view = ("train", "paper")
    aurcs = {label: {"balanced": v[0], "worst_group": v[2]} for label, v in PAPER_TABLE2["ImageNet-LT"].items()}
    assert orderings([SeedTable({view: aurcs}, [], {})], view)[-1].startswith("- FAIL")
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 0.003, 500)
    figures = {
        label: {"figures": {}, "intervals": {},
                "draws": {"balanced_error": {"aurc": v["balanced"] + noise}, "worst_group_error": {"aurc": v["worst_group"] + noise + rng.normal(0, 0.002, 500)}}}
        for label, v in aurcs.items()
    }  # fmt: skip
    line = orderings([SeedTable({view: aurcs}, [], {}, {}, {view: figures})], view)[-1]
    assert line.startswith("- PASS: Plug-in [Worst] comparable to or better than Chow [DRO]") and "interval" in line


def test_the_page_names_a_seed_whose_recipe_differs():
    """Stages find each seed's run by its recipe, so a mixed table cannot be made from one config; logits that
    record another recipe (an imported run) are still named on the page, never averaged silently."""
    from argse.papers.table2_page import recipes_across_seeds

    one = SeedTable({}, [], {}, {"ce": {"epochs": 200, "lr": 0.1, "seed": 0}})
    same = SeedTable({}, [], {}, {"ce": {"epochs": 200, "lr": 0.1, "seed": 1}})
    other = SeedTable({}, [], {}, {"ce": {"epochs": 100, "lr": 0.1, "seed": 2}})
    assert recipes_across_seeds([one], [0]) == ""
    assert recipes_across_seeds([one, same], [0, 1]).startswith("Every seed's models ran these recipes")
    assert recipes_across_seeds([one, same, other], [0, 1, 2]) == (
        "The seeds' recipes differ from the first seed's: seed 2, ce: epochs.\n"
    )


def test_a_css_run_of_another_cost_is_never_taken_for_a_cost(tmp_path, capsys):
    """The run named for cost 0.9 holds a model trained at cost 0.7: stages find a run by the cost it was made
    with, so the tabulation does not plot it as 0.9's point but names what is missing."""
    from argse import cli

    _write_runs(tmp_path, [0])
    out = tmp_path / "o"
    cfg = seed_configs(None, _sets(tmp_path), [0])[0]
    sets = ["data.tail_max_count=10", "recipes.css.costs=[0.5,0.9]", "seed=0"]
    other = tmp_path / "other"
    write_run(other / f"{cfg.name}_css0.9", {"css": _model(2.0, -0.3)}, 4, COUNTS, seed=0,
              overrides=[*sets, "recipes.css.cost=0.7", f"output_dir={other}"])  # fmt: skip
    import shutil

    shutil.rmtree(out / f"{cfg.name}_css0.9")
    shutil.copytree(other / f"{cfg.name}_css0.9", out / f"{cfg.name}_css0.9", symlinks=True)
    assert cli.run(table2.main, _argv(tmp_path, "--seeds", "0")) == 2
    err = capsys.readouterr().err
    assert "this config has no expert 'css' yet" in err and "Traceback" not in err, err


def test_a_seed_trained_with_another_recipe_is_not_averaged_in(tmp_path, capsys):
    """Seed 1's ce was made with 3 epochs, the config's recipe says otherwise: seed 1 has no ce under this config,
    so the table is not made from mixed recipes."""
    from argse import cli

    _write_runs(tmp_path, [0])
    cfg = seed_configs(None, _sets(tmp_path), [1])[0]
    sets = ["data.tail_max_count=10", "recipes.css.costs=[0.5,0.9]", "seed=1", "recipes.ce.epochs=3"]
    write_run(tmp_path / "o" / cfg.name, {"ce": _model(1.0), "logit_adjust": _model(2.0), "group_dro": _model(2.5)},
              4, COUNTS, seed=1, overrides=sets)  # fmt: skip
    assert cli.run(table2.main, _argv(tmp_path, "--seeds", "0,1")) == 2
    err = capsys.readouterr().err
    assert "this config has no" in err and "Traceback" not in err, err


def test_one_seed_s_headline_aurcs_carry_their_bootstrap_interval(tmp_path):
    _write_runs(tmp_path, [0])
    assert table2.main(_argv(tmp_path, "--seeds", "0")) == 0
    page = (tmp_path / "page.md").read_text()
    line = next(x for x in page.splitlines() if x.startswith("| Chow | ce, rejector chow |"))
    cells = [c.strip() for c in line.split("|")[1:-1]]
    assert re.fullmatch(r"[0-9.]+ \[[0-9.]+, [0-9.]+\]", cells[2]) and re.fullmatch(
        r"[0-9.]+ \[[0-9.]+, [0-9.]+\]", cells[3]
    )
    assert "[" not in cells[4]  # the rates-reached AURCs have no interval
    model = next(x for x in page.splitlines() if x.startswith("| ce |") and "%" not in x and x.count("[") == 3)
    assert re.fullmatch(r"\| ce( \| [0-9.]+ \[[0-9.]+, [0-9.]+\]){3} \|", model), model  # accuracies with intervals


def test_the_grids_choose_among_models_and_name_no_stage(tmp_path):
    """group_dro's (eta, C) grid and CSS's costs are not in any model's stage name: another grid finds the models
    already trained; another eta is another model."""
    _write_runs(tmp_path, [0])
    base = seed_configs(None, _sets(tmp_path), [0])[0]

    def key(*sets: str, expert: str = "group_dro"):
        return RunStages(seed_configs(None, [*_sets(tmp_path), *sets], [0])[0]).expert_key(expert).id

    assert key("recipes.group_dro.grid_steps=[0.01]", "recipes.group_dro.grid_adjustments=[3.0]") == key()
    assert key("recipes.group_dro.dro_step=0.01") != key()
    css = css_config(base, 0.5)
    same = RunStages(css).expert_key("css").id
    other = changed(css, recipes={**css.recipes, "css": {**css.recipes["css"], "costs": [0.5]}})
    assert RunStages(other).expert_key("css").id == same


def test_a_grid_whose_pairs_name_one_run_is_refused(tmp_path):
    _write_runs(tmp_path, [0])
    with pytest.raises(ArgseError, match=r"holds two pairs that name the same run \(dro0\.001_1\)"):
        table2.main(_argv(tmp_path, "--seeds", "0", "--set", "recipes.group_dro.grid_steps=[0.001,0.0010000001]"))


def test_the_pages_first_statement_says_how_many_seeds_and_how_long_each_model_trained():
    """Issue 37: a page of one full-length seed, or of shortened models, says so before anything else."""

    full = {"ce": {"epochs": 200}, "group_dro": {"epochs": 256}, "css": {"epochs": 256}, "gating": {}}
    line = scale_line([SeedTable({}, [{}], {}, full, {}, [{}])], [0])
    assert line.startswith("**One seed (0), every model at its recipe's full length** (epochs: ce 200, group_dro 256")
    assert "CSS at 1 of the paper's 9 costs and Chow [DRO] picked among 1 of its 4 (eta, C) pairs" in line
    short = SeedTable({}, [{}] * 3, {}, {**full, "ce": {"epochs": 3}}, {}, [{}] * 4)
    line = scale_line([short, short], [0, 1])
    assert line.startswith("**Seeds 0, 1, shortened models: a smoke test, not a reproduction**")
    assert "ce 3 of its recipe's 200, group_dro 256," in line and "3 of the paper's 9 costs" in line
