import json

import numpy as np
import pytest
import torch

from argse import cli, evaluate, train_gating
from argse.gating.selective_objective import rule_errors
from argse.selective.rejectors import Rule, evaluate_rule
from argse.selective.sweep import nearest_rule
from argse.selective.views import group_view
from tests.test_gating import run  # noqa: F401  (the two-expert logits fixture)


def _random_case(n=300, c=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    probs = torch.softmax(3 * torch.randn(n, c, generator=g, dtype=torch.float64), 1)
    labels = torch.randint(0, c, (n,), generator=g)
    class_group = torch.tensor([0, 0, 0, 1, 1, 1])
    weight = torch.rand(n, generator=g, dtype=torch.float64) + 0.5
    return probs, labels, class_group, weight


@pytest.mark.parametrize("alpha, b, t", [([1.0, 1.0], [1.0, 1.0], -0.5), ([1.0, 2.5], [0.7, 1.9], -0.2)])
def test_hard_surrogate_is_the_error_of_selective_py(alpha, b, t):
    probs, labels, class_group, weight = _random_case()
    a_t, b_t = torch.tensor([alpha], dtype=torch.float64), torch.tensor([b], dtype=torch.float64)
    err, reject = rule_errors(
        probs, labels, class_group, 2, a_t, b_t, torch.tensor([t], dtype=torch.float64), weight, 0
    )
    view = group_view(probs.numpy(), labels.numpy(), class_group.numpy(), 2, weight.numpy())
    ref = evaluate_rule(Rule(np.array(alpha), np.array(b), t), view)
    assert err[0].tolist() == pytest.approx(ref["group_error"], abs=1e-12)
    assert float(reject[0]) == pytest.approx(ref["rejection_rate"], abs=1e-12)
    # The smooth version tends to it as the temperature goes to 0.
    soft, soft_rej = rule_errors(probs, labels, class_group, 2, a_t, b_t, torch.tensor([t], dtype=torch.float64),
                                 weight, 1e-5)  # fmt: skip
    assert soft[0].tolist() == pytest.approx(ref["group_error"], abs=0.02)
    assert float(soft_rej[0]) == pytest.approx(ref["rejection_rate"], abs=0.02)


def test_nearest_rule():
    rules = [{"rate": 0.2}, {"rate": 0.4}]
    assert nearest_rule(rules, 0.0)["rate"] == 0.2 and nearest_rule(rules, 0.3)["rate"] == 0.2
    assert nearest_rule(rules, 0.9)["rate"] == 0.4


@pytest.mark.parametrize("objective", ["selective_balanced", "selective_worst"])
def test_selective_gate_trains_and_evaluate_adds_its_rule(tmp_path, run, objective):  # noqa: F811
    sets = run + ["--set", f"gating.objective={objective}", "--set", "gating.epochs=25", "--set",
                  "gating.selective_warmup_epochs=5"]  # fmt: skip
    assert train_gating.main(sets) == 0
    gate = json.loads((tmp_path / "outputs" / "g" / "gating" / "gate.json").read_text())
    assert gate["objective"] == objective
    history = [h["surrogate"] for h in gate["selective"]["history"]]
    assert history[-1] < history[0]  # the surrogate decreases during training
    assert [r["rate"] for r in gate["rules"]] == [0.2, 0.4, 0.6]
    assert all(len(r["alpha"]) == 2 and r["alpha"][0] == 1.0 for r in gate["rules"])
    assert evaluate.main(sets + ["--methods", "chow", "--sources", "gating,a_head"]) == 0
    out = tmp_path / "outputs" / "g" / "evaluation"
    report = json.loads((out / "report.json").read_text())
    assert {(r["source"], r["method"]) for r in report["results"]} == {
        ("gating", "chow"),
        ("gating", "gate_rule"),
        ("a_head", "chow"),
    }
    curve = next(r["curve"] for r in report["results"] if r["method"] == "gate_rule")
    # t is refitted to the target rate on the rejector part of tune, as for every other method.
    assert all(abs(row["tune_rejection_rate"] - row["target_rate"]) < 0.05 for row in curve)
    rules = json.loads((out / "rules.json").read_text())
    assert rules["format"] == "argse.rules/1" and set(rules["rules"]["gating"]) == {"chow", "gate_rule"}
    assert cli.run(evaluate.main, sets + ["--methods", "gate_rule"]) == 2
