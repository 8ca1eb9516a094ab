"""A plugin that misbehaves is one sentence naming it and what it did: a sampler's indices and a rejector's
rule are checked where argse takes them (issue 40, item 6)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from argse import cli, evaluate
from argse.core.errors import ArgseError
from argse.selective.rejectors import REJECTORS, FitOptions, Rule, fit_rule
from argse.training.samplers import SAMPLERS, epoch_order
from tests.test_selective import MU_GRID, _one_expert_run, _underconfident_tail

LABELS = torch.tensor([0, 0, 0, 1, 1, 2])


@pytest.mark.parametrize(
    "returns, message",
    [
        (lambda n, d: torch.arange(d) + n, "returned index 11, outside the 6 training samples [0, 5]"),
        (lambda n, d: torch.arange(d) - 1, "returned index -1, outside the 6 training samples [0, 5]"),
        (lambda n, d: torch.arange(d - 1), "returned 5 indices for 6 draws"),
        (lambda n, d: torch.rand(d), "returned a 1-D torch.float32 tensor; a sampler returns a 1-D integer tensor"),
        (lambda n, d: list(range(d)), "returned list; a sampler returns a 1-D integer tensor"),
        (lambda n, d: torch.zeros(d, 1, dtype=torch.long), "returned a 2-D torch.int64 tensor"),
    ],
)
def test_a_sampler_s_bad_indices_are_one_sentence(returns, message):
    SAMPLERS.register("bad_sampler")(lambda labels, g, c, draws: returns(len(labels), draws))
    try:
        with pytest.raises(ArgseError, match=re.escape("sampler 'bad_sampler' " + message)):
            epoch_order(LABELS, "bad_sampler", torch.Generator(), 3)
    finally:
        SAMPLERS.unregister("bad_sampler")


def test_a_good_sampler_s_indices_pass_unchanged():
    order = epoch_order(LABELS, "balanced", torch.Generator().manual_seed(0), 3, draws=9)
    assert order.shape == (9,) and 0 <= int(order.min()) and int(order.max()) < 6


@pytest.mark.parametrize(
    "rule, message",
    [
        (None, "returned NoneType; a rejector returns a Rule(alpha, b, t)"),
        (
            Rule(np.ones(3), np.ones(2), 0.0),
            "returned alpha [1.0, 1.0, 1.0]; a rule has one finite alpha per group (2)",
        ),
        (Rule(np.ones(2), np.array([1.0, np.nan]), 0.0), "returned b [1.0, nan]; a rule has one finite b per group"),
        (Rule(np.float64(1.0), np.ones(2), 0.0), "returned alpha 1.0; a rule has one finite alpha per group"),
    ],
)
def test_a_rejector_s_bad_rule_is_one_sentence(rule, message):
    REJECTORS.register("bad_rejector")(lambda view, rate, opts: rule)
    try:
        with pytest.raises(ArgseError) as exc:
            fit_rule("bad_rejector", _underconfident_tail(200, 0), 0.2, FitOptions(MU_GRID))
        assert str(exc.value).startswith("rejector 'bad_rejector' " + message), str(exc.value)
    finally:
        REJECTORS.unregister("bad_rejector")


def test_a_rejector_plugin_s_bad_rule_stops_evaluate_in_one_sentence(tmp_path, capsys):
    """The check runs in the sweep process; the sentence reaches the command's stderr, not a traceback."""
    REJECTORS.register("bad_rejector")(lambda view, rate, opts: Rule(np.ones(3), np.ones(3), 0.0))
    try:
        base = _one_expert_run(tmp_path / "o", "p", [100, 50, 10, 5])
        assert cli.run(evaluate.main, base + ["--methods", "chow,bad_rejector"]) == 2
        err = capsys.readouterr().err
        assert "rejector 'bad_rejector' returned alpha [1.0, 1.0, 1.0]" in err and "Traceback" not in err
    finally:
        REJECTORS.unregister("bad_rejector")
