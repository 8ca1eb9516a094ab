"""The published figures table: every accuracy agrees with the error it was read as, and has a source."""

import re

from argse.reports.published import FIGURES, accuracy_markdown


def test_accuracies_are_100_minus_the_errors_read():
    for f in FIGURES:
        read = re.search(r"error (\d+\.\d+)", f.where)
        if read:
            assert round(100 - float(read.group(1)), 2) == f.balanced_acc, f


def test_every_figure_names_where_it_was_read_and_its_recipe():
    assert all(f.where and f.recipe and 0 < f.balanced_acc < 100 for f in FIGURES)
    table = accuracy_markdown("CIFAR-10-LT")
    assert "CIFAR-100-LT" not in table and table.count("\n") == 2 + sum(f.dataset == "CIFAR-10-LT" for f in FIGURES)
