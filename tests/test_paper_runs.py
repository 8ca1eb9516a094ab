"""Table 2 and the multi-seed reproduction never count one run twice or read one run for another."""

from __future__ import annotations

import pytest

from argse.config.loading import load_run_config
from argse.core.errors import ArgseError
from argse.papers.narasimhan2024 import css_costs, parse_seeds


@pytest.mark.parametrize("text", ["0,00", "1,1", "a,1", "-1", "٣"])
def test_seeds_are_distinct_non_negative_integers(text):
    with pytest.raises(ArgseError, match=r"^--seeds must be distinct non-negative integers"):
        parse_seeds(text)


def test_seeds_read_as_given():
    assert parse_seeds("2, 0,1") == [2, 0, 1] and parse_seeds(None) == []


def test_two_costs_that_name_one_run_are_refused():
    cfg = load_run_config(None, ["recipes.css.costs=[0.1, 0.5, 0.5000001]"])
    with pytest.raises(
        ArgseError, match=r"^recipes\.css\.costs holds 0\.5 and 0\.5000001, which name the same run \(css0\.5\)"
    ):
        css_costs(cfg)
    assert css_costs(load_run_config(None, ["recipes.css.costs=[0.1, 0.5]"])) == [0.1, 0.5]
