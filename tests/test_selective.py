import json
import sys

import numpy as np
import pytest
import torch

from argse import cli, evaluate
from argse.selective.rejectors import FitOptions, Rule, aurc, evaluate_rule, fit_rule
from argse.selective.views import group_rates, group_view, threshold

# Three classes; groups: head = {0, 1}, tail = {2}.
CLASS_GROUP = np.array([0, 0, 1])
PROBS = np.array(
    [
        [0.70, 0.20, 0.10],  # label 0: sure and right
        [0.40, 0.35, 0.25],  # label 1: unsure and wrong (predicts 0)
        [0.30, 0.30, 0.40],  # label 2: unsure, right
        [0.10, 0.15, 0.75],  # label 2: sure and right
    ]
)
LABELS = np.array([0, 1, 2, 2])
MU_GRID = tuple(round(-2 + 0.1 * i, 1) for i in range(41))
VIEW = group_view(PROBS, LABELS, CLASS_GROUP, 2)


def test_group_view_by_hand():
    assert np.allclose(VIEW.top, [[0.7, 0.1], [0.4, 0.25], [0.3, 0.4], [0.15, 0.75]])
    assert np.allclose(VIEW.mass, [[0.9, 0.1], [0.75, 0.25], [0.6, 0.4], [0.25, 0.75]])
    assert VIEW.hit.tolist() == [[True, False], [False, False], [False, True], [False, True]]


def test_chow_by_hand():
    # c = 0.5: accept iff max_y p_y >= 0.5 -> samples 0 and 3, both right.
    accepted, correct = Rule(np.ones(2), np.ones(2), -0.5).apply(VIEW)
    assert accepted.tolist() == [True, False, False, True] and correct.tolist() == [True, False, True, True]
    m = evaluate_rule(Rule(np.ones(2), np.ones(2), -0.65), VIEW)  # accept iff max p >= 0.35: samples 0, 1, 2, 3
    assert m["rejection_rate"] == 0 and m["error"] == 0.25
    assert m["group_error"] == [0.5, 0.0] and m["balanced_error"] == 0.25 and m["worst_group_error"] == 0.5


def test_plugin_rule_by_hand():
    # beta = (1/2, 1/2), pi = (1, 0.25): alpha = (0.5, 2); mu = (0, 1.5): b = (0.5, 0.5); c = 0.
    # Sample 2: max(0.5*0.3, 2*0.4) = 0.8 (predicts class 2) vs sum b p = 0.5 -> accept.
    # Sample 1: max(0.5*0.4, 2*0.25) = 0.5 (predicts class 2, wrong) vs 0.5 -> accept (ties accept).
    # Sample 0: max(0.35, 0.2) = 0.35 < 0.5 -> reject.
    accepted, correct = Rule(np.array([0.5, 2.0]), np.array([0.5, 0.5]), 0.0).apply(VIEW)
    assert accepted.tolist() == [False, True, True, True]
    assert correct.tolist() == [True, False, True, True]


@pytest.mark.parametrize("c", [0.0, 0.1, 0.2, 0.3, 0.45])
def test_plugin_with_unit_coverage_and_zero_mu_is_chow(c):
    # alpha = beta/pi = (1/2, 1/2), b = alpha - mu = (1/2, 1/2):
    # accept iff max_y p_y / 2 >= sum_y p_y / 2 - c  <=>  max_y p_y >= 1 - 2c: Chow with cost 2c,
    # and argmax_y p_y / 2 = argmax_y p_y.
    half = np.full(2, 0.5)
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=200)
    view = group_view(probs, rng.integers(0, 3, 200), CLASS_GROUP, 2)
    plug, chow = Rule(half, half, -c).apply(view), Rule(np.ones(2), np.ones(2), -2 * c).apply(view)
    assert np.array_equal(plug[0], chow[0]) and np.array_equal(plug[1], chow[1])


def test_threshold_hits_the_target_rate_and_sweep_is_monotone():
    s = np.random.default_rng(1).normal(size=1000)
    for rate in (0.0, 0.25, 0.8):
        assert (s < threshold(s, rate)).mean() == pytest.approx(rate)
    view = _underconfident_tail(2000, seed=3)
    opts = FitOptions(MU_GRID, power_iters=10, worst_rounds=5)
    for method in ("chow", "plugin_balanced", "plugin_worst"):
        rates = [
            evaluate_rule(fit_rule(method, view, r, opts), view)["rejection_rate"] for r in np.arange(0, 0.85, 0.05)
        ]
        assert all(b >= a for a, b in zip(rates, rates[1:], strict=False)) and abs(rates[-1] - 0.8) < 0.01


def test_aurc_by_hand():
    assert aurc([0, 0.4, 0.8], [0.3, 0.3, 0.3], 0, 0.8) == pytest.approx(0.3)
    assert aurc([0, 0.5, 1.0], [0.0, 0.5, 1.0]) == pytest.approx(0.5)
    assert aurc([0, 0.5], [0.2, 0.4], 0, 1) == pytest.approx((0.5 * 0.3 + 0.5 * 0.4) / 1)  # held at 0.4 past 0.5


def _underconfident_tail(n: int, seed: int, classes: int = 10, tail_from: int = 7):
    """A CE model on long-tailed data: posteriors of the training prior (imbalance 100), so on
    balanced test data the tail classes are systematically under-confident and under-predicted."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    logits = rng.normal(size=(n, classes))
    logits[np.arange(n), labels] += rng.uniform(0, 5, n)
    logits += np.log(100.0 ** (-np.arange(classes) / (classes - 1)))  # log prior
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    class_group = (np.arange(classes) >= tail_from).astype(int)
    return group_view(probs, labels, class_group, 2)


def test_plugins_beat_chow_on_an_underconfident_tail():
    tune, test = _underconfident_tail(4000, 0), _underconfident_tail(4000, 1)
    opts = FitOptions(MU_GRID, power_iters=10, worst_rounds=10)
    grid = [round(0.05 * i, 2) for i in range(17)]
    curves = {
        m: [evaluate_rule(fit_rule(m, tune, r, opts), test) for r in grid]
        for m in ("chow", "plugin_balanced", "plugin_worst")
    }
    area = {
        (m, k): aurc(grid, [row[k] for row in curves[m]], 0, 0.8)
        for m in curves
        for k in ("balanced_error", "worst_group_error")
    }
    assert area[("plugin_balanced", "balanced_error")] < area[("chow", "balanced_error")] - 0.01
    assert area[("plugin_worst", "worst_group_error")] < area[("plugin_balanced", "worst_group_error")]


def _one_expert_run(out_dir, name: str, class_counts: list[int]) -> list[str]:
    """Hand-made logits of one expert 'ce' for run ``name``; the --set options that select the run."""
    from studies.logit_factory import write_run

    def model(labels, g):
        return torch.randn(len(labels), 4, generator=g) + 2 * torch.nn.functional.one_hot(labels, 4)

    write_run(out_dir / name, {"ce": model}, 4, class_counts, overrides=["data.tail_max_count=10"])
    return ["--set", f"output_dir={out_dir}", "--set", f"name={name}", "--set", "data.tail_max_count=10",
            "--set", "experts=[ce]"]  # fmt: skip


def test_evaluate_end_to_end_and_bad_input(tmp_path, capsys):
    base = _one_expert_run(tmp_path / "o", "e", [100, 50, 10, 5])
    assert evaluate.main(base + ["--methods", "chow,plugin_balanced"]) == 0
    out = tmp_path / "o" / "e" / "evaluation"
    assert {p.name for p in out.iterdir()} >= {"report.json", "rc_curves.csv", "rc_curves.png", "summary.md"}
    # every AURC printed and in summary.md has its bootstrap interval
    row = next(x for x in (out / "summary.md").read_text().splitlines() if x.startswith("| ce | chow |"))
    assert row.count(" [") == 4, row
    for argv, msg in [
        (["--methods", "magic"], "unknown rejector 'magic'; available rejectors: chow, plugin_balanced, plugin_worst"),
        (["--sources", "ce,gating"], "this config has no gate over its experts yet"),
        (["--set", "evaluate.rejection_grid=[0.0, 1.0]"], "rejection_grid values must lie in [0, 1)"),
    ]:
        capsys.readouterr()
        assert cli.run(evaluate.main, base + argv) == 2
        assert msg in capsys.readouterr().err


# Today's rules on balanced data, printed by the implementation before sample weights existed
# (commit 1af9675): with no weights (test_prior: balanced) every number must stay exactly the same.
BEFORE_WEIGHTS = {
    ("chow", 0.0): (0.0, 0.610847047689153, 0.8197802197802198),
    ("chow", 0.2): (0.21666666666666667, 0.5662857142857143, 0.8),
    ("chow", 0.5): (0.5113333333333333, 0.4871235155011564, 0.7795275590551181),
    ("plugin_balanced", 0.0): (0.0, 0.5568589305431411, 0.7098901098901099),
    ("plugin_balanced", 0.2): (0.22533333333333339, 0.4677070961995249, 0.621875),
    ("plugin_balanced", 0.5): (0.5073333333333334, 0.2869704361604537, 0.39880952380952384),
    ("plugin_worst", 0.0): (0.0, 0.48872706241127295, 0.5736263736263736),
    ("plugin_worst", 0.2): (0.21999999999999997, 0.39998777927940876, 0.48493975903614456),
    ("plugin_worst", 0.5): (0.5033333333333334, 0.2533566841798015, 0.3333333333333333),
}


def test_balanced_prior_reproduces_the_unweighted_rules_exactly():
    tune, test = _underconfident_tail(1500, 5), _underconfident_tail(1500, 6)
    opts = FitOptions(MU_GRID, power_iters=10, worst_rounds=5, search="power")
    for (method, rate), expected in BEFORE_WEIGHTS.items():
        m = evaluate_rule(fit_rule(method, tune, rate, opts), test)
        assert (m["rejection_rate"], m["balanced_error"], m["worst_group_error"]) == expected, (method, rate)


def test_weighted_quantile_by_hand():
    s, w = np.array([3.0, 1.0, 4.0, 2.0]), np.array([1.0, 1.0, 5.0, 1.0])  # sorted: 1 2 3 4, weights 1 1 1 5
    assert threshold(s, 0.25, w) == 3.0  # weight 2 of 8 lies below 3
    assert threshold(s, 0.3, w) == 3.0  # 3 of 8 (0.375) would exceed the rate
    assert threshold(s, 0.375, w) == 4.0
    assert threshold(s, 0.0, w) == 1.0 and threshold(s, 0.99, w) == 4.0
    stacked = threshold(np.stack([s, -s]), 0.25, w)  # rules stacked in leading dims: -s sorted is -4 -3 -2 -1
    assert stacked.tolist() == [3.0, -4.0]  # -4 carries weight 5: rejecting it would exceed 2 of 8
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 101))
    assert np.array_equal(threshold(x, 0.3, np.full(101, 2.0)), threshold(x, 0.3))


def test_weighted_group_errors_by_hand():
    # Groups 0 0 1 1, weights 1 3 2 2; samples 0-2 accepted, sample 1 wrong.
    view = group_view(PROBS, LABELS, np.array([0, 0, 1]), 2, weight=np.array([1.0, 3.0, 2.0, 2.0]))
    accepted, correct = np.array([True, True, True, False]), np.array([True, False, True, True])
    err, cov, joint = group_rates(accepted, correct, view.group, 2, view.weight)
    assert err.tolist() == [0.75, 0.0] and cov.tolist() == [1.0, 0.5] and joint.tolist() == [0.5, 0.25]
    # Rule accepting max p >= 0.35 accepts all four: weighted error = sample 1's weight 3 of 8.
    m = evaluate_rule(Rule(np.ones(2), np.ones(2), -0.65), view)
    assert m["rejection_rate"] == 0 and m["error"] == 3 / 8 and m["group_error"] == [0.75, 0.0]
    m = evaluate_rule(Rule(np.ones(2), np.ones(2), -0.5), view)  # rejects samples 1 and 2 (weight 5 of 8)
    assert m["rejection_rate"] == pytest.approx(5 / 8) and m["error"] == 0.0 and m["group_coverage"] == [0.25, 0.5]


@pytest.mark.parametrize("weighted", [False, True])
def test_grid_search_is_never_worse_than_algorithm_1_on_the_fitting_sample(weighted):
    view = _underconfident_tail(1500, 7)
    if weighted:
        view.weight = np.where(view.group == 1, 0.05, 1.0)
    power, grid = (FitOptions(MU_GRID, 10, 5, search=s) for s in ("power", "grid"))
    for method, metric in (("plugin_balanced", "balanced_error"), ("plugin_worst", "worst_group_error")):
        for rate in (0.0, 0.3, 0.6):
            a = evaluate_rule(fit_rule(method, view, rate, power), view)[metric]
            b = evaluate_rule(fit_rule(method, view, rate, grid), view)[metric]
            chow = evaluate_rule(fit_rule("chow", view, rate, power), view)[metric]
            assert b <= min(a, chow) + 1e-12, (method, rate, a, b, chow)


def _cao_lt_problem(per_class: int, seed: int, classes: int = 100, if_: float = 100.0):
    """Held-out samples of a CIFAR-100-LT-like problem (Cao profile, IF 100, tail = <= 20 images) scored
    by a CE-like model (its posterior carries the training prior), weighted to the training prior."""
    counts = np.floor(500 * if_ ** (-np.arange(classes) / (classes - 1)))
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), per_class)
    logits = rng.normal(size=(len(labels), classes))
    logits[np.arange(len(labels)), labels] += rng.uniform(0, 6, len(labels))
    logits += np.log(counts / counts.sum())
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    weight = (counts / counts.sum())[labels] * classes  # pi_train(y) / pi_split(y), the split being balanced
    return group_view(probs, labels, (counts <= 20).astype(int), 2, weight)


def test_paper_result_under_the_training_prior_plugin_well_below_chow():
    tune, test = _cao_lt_problem(30, 0), _cao_lt_problem(50, 1)
    opts = FitOptions((1.0, 6.0, 11.0), 10, 25, every_iterate=False, best_round=False, refit_all=False)
    grid = [round(0.05 * i, 2) for i in range(17)]
    area = {
        m: aurc(grid, [evaluate_rule(fit_rule(m, tune, r, opts), test)["balanced_error"] for r in grid], 0, 0.8)
        for m in ("chow", "plugin_balanced")
    }
    assert area["plugin_balanced"] < 0.8 * area["chow"], area


def test_evaluate_refuses_logits_of_another_split_or_run(tmp_path, capsys):
    """The files of one source agree with each other; only the run's split manifest can tell that they
    are another split's, or the same split of another run's (load_sources checks every consumer's)."""
    import shutil

    from argse.data.logits import run_folders, split_file

    def logits_path(run, source, split):
        return split_file(run_folders(run, [source])[source], split)

    base = _one_expert_run(tmp_path / "o", "e", [100, 50, 10, 5])
    _one_expert_run(tmp_path / "o", "other", [100, 50, 10, 6])  # another run: other counts, other splits.json
    tune = logits_path(tmp_path / "o" / "e", "ce", "tune").resolve()  # the file in ce's stage, which evaluate reads
    for replacement, field in [
        (logits_path(tmp_path / "o" / "e", "ce", "val"), "split"),
        (logits_path(tmp_path / "o" / "other", "ce", "tune"), "splits_sha256"),
    ]:
        shutil.copyfile(replacement, tune)  # by hand, into the published stage
        capsys.readouterr()
        assert cli.run(evaluate.main, base + ["--methods", "chow"]) == 2
        err = capsys.readouterr().err
        assert f"field '{field}' does not match the run's split manifest" in err and str(tune) in err
    assert not (tmp_path / "o" / "e" / "evaluation").exists()


def test_a_rejector_plugin_runs_through_evaluate_without_editing_argse(tmp_path, capsys):
    """tests/plugins/prior_rejector.py registers 'inverse_prior'; named in 'plugins', evaluate fits, reports
    and writes rules for it like a built-in rejector, and without the plugin the name is refused."""
    from argse.selective.rejectors import REJECTORS

    REJECTORS.unregister("inverse_prior")
    sys.modules.pop("tests.plugins.prior_rejector", None)  # so that importing it registers it again
    base = _one_expert_run(tmp_path / "o", "p", [100, 50, 10, 5])
    assert cli.run(evaluate.main, base + ["--methods", "chow,inverse_prior"]) == 2
    assert "unknown rejector 'inverse_prior'" in capsys.readouterr().err
    plugin = ["--set", "plugins=[tests.plugins.prior_rejector]"]
    assert evaluate.main(base + plugin + ["--methods", "chow,inverse_prior"]) == 0
    out = tmp_path / "o" / "p" / "evaluation"
    report = json.loads((out / "report.json").read_text())
    curve = {r["method"]: r["curve"] for r in report["results"]}["inverse_prior"]
    assert [round(r["target_rate"], 2) for r in curve][:3] == [0.0, 0.05, 0.1]
    # the rule is the plugin's: alpha proportional to 1 / group prior, so the tail group weighs more
    rule = json.loads((out / "rules.json").read_text())["rules"]["ce"]["inverse_prior"][4]
    assert rule["alpha"][1] > rule["alpha"][0] and rule["alpha"] == rule["b"]
    assert "inverse_prior" in (out / "rc_curves.csv").read_text()


def test_a_rejector_plugin_from_an_entry_point(monkeypatch):
    import importlib.metadata

    import argse.core.registry
    from argse.core.registry import load_plugins
    from argse.selective.rejectors import REJECTORS

    REJECTORS.unregister("inverse_prior")
    sys.modules.pop("tests.plugins.prior_rejector", None)
    ep = importlib.metadata.EntryPoint("inverse_prior", "tests.plugins.prior_rejector", "argse.rejectors")
    monkeypatch.setattr(argse.core.registry, "entry_points", lambda group: [ep] if group == "argse.rejectors" else [])
    assert "inverse_prior" not in REJECTORS
    load_plugins([])
    assert "inverse_prior" in REJECTORS


def _hopeless_tail_run(out_dir, name: str) -> list[str]:
    """Hand-made logits whose tail classes (2, 3) are near-uniform and head classes sure, so that Chow's rule
    rejects the whole tail past a small rate: those points have a group that accepts nothing."""
    from studies.logit_factory import write_run

    def model(labels, g):
        sure = torch.where(labels < 2, 4.0, 0.0).view(-1, 1)
        return 0.1 * torch.randn(len(labels), 4, generator=g) + sure * torch.nn.functional.one_hot(labels, 4)

    write_run(out_dir / name, {"ce": model}, 4, [100, 50, 10, 5], overrides=["data.tail_max_count=10"])
    return ["--set", f"output_dir={out_dir}", "--set", f"name={name}", "--set", "data.tail_max_count=10",
            "--set", "experts=[ce]", "--methods", "chow"]  # fmt: skip


def test_empty_group_points_are_counted_drawn_marked_and_in_the_aurc(tmp_path, monkeypatch, capsys):
    """A point where a group accepts nothing: its count is in report.json and summary.md and the console says
    so; the plot draws every point the AURC rests on and marks exactly those points."""
    import matplotlib.axes

    drawn, plot = [], matplotlib.axes.Axes.plot

    def record(ax, *args, **kwargs):
        drawn.append((list(args[0]), list(args[1]), kwargs.get("label", "")))
        return plot(ax, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "plot", record)
    assert evaluate.main(_hopeless_tail_run(tmp_path / "o", "h")) == 0
    out = tmp_path / "o" / "h" / "evaluation"
    (result,) = json.loads((out / "report.json").read_text())["results"]
    curve = result["curve"]
    empty = [r for r in curve if r["empty_groups"]]
    assert empty and all(r["empty_groups"] == [1] and r["group_coverage"][1] == 0 for r in empty)
    assert all(min(r["group_coverage"]) > 0 for r in curve if not r["empty_groups"])
    assert result["empty_group_points"] == len(empty)
    assert f"| ce | chow | {len(empty)} |" in (out / "summary.md").read_text()
    assert f"1 curve(s) have {len(empty)} point(s) where a group accepts nothing" in capsys.readouterr().out
    # The balanced-error line holds every row, so its AURC over the rows' target rates is the reported one ...
    (line,) = [d for d in drawn if d[2] == "chow" and d[1] == [r["balanced_error"] for r in curve]]  # in the ce panel
    assert line[0] == [r["rejection_rate"] for r in curve]
    rates = [r["target_rate"] for r in curve]
    assert aurc(rates, line[1], 0, 1) == pytest.approx(result["aurc"]["balanced_error@0-1"], abs=0)
    # ... and the marked points are exactly the rows with an empty group, in both panels.
    marked = [d for d in drawn if d[2].startswith("a group accepts nothing") or d[2] == "_nolegend_"]
    assert [m[0] for m in marked] == [[r["rejection_rate"] for r in empty]] * 2
    assert [m[1] for m in marked] == [[r[k] for r in empty] for k in ("balanced_error", "worst_group_error")]


@pytest.mark.parametrize("tail_max_count", [0, 100])
def test_evaluation_refuses_a_group_without_classes(tmp_path, tail_max_count):
    """data.tail_max_count=0 leaves the tail without classes (100 the head): its error would be a convention
    averaged into the balanced error, so the evaluation refuses in one sentence, whatever the config allows."""
    import copy

    from argse.core.errors import ArgseError
    from argse.selective.sweep import evaluate_sources
    from argse.stages.gate import reader_of
    from argse.stages.run import RunStages

    args = cli.parser("").parse_args(_one_expert_run(tmp_path / "o", "g", [100, 50, 10, 5]))
    cfg = copy.deepcopy(cli.load_config(args))
    reader = reader_of(RunStages(cfg), ["ce"], ["tune", "test"])  # ce's stage, found under the config's groups
    object.__setattr__(cfg.data, "tail_max_count", tail_max_count)  # past the config's own check: this is the guard
    with pytest.raises(ArgseError) as exc:
        evaluate_sources(cfg, reader, ["chow"])
    msg = str(exc.value)
    group = "tail" if tail_max_count == 0 else "head"
    assert f"data.tail_max_count={tail_max_count} leaves the {group} group without classes" in msg, msg
    assert "100, 50, 10, 5" in msg and "\n" not in msg and msg.count(". ") == 0, msg


def test_evaluation_refuses_a_group_without_samples_in_a_split():
    """A tail class whose held-out images all went elsewhere: the tail's error on test would be the convention 1
    at every rate, so the evaluation names the group and the split instead."""
    from argse.core.errors import ArgseError
    from argse.data.groups import head_tail_groups
    from argse.selective.sweep import check_samples

    groups = head_tail_groups(torch.tensor([100, 50, 10]), 10)
    only_head = group_view(PROBS[:2], LABELS[:2], groups.class_group(), groups.k)
    check_samples(groups, {"test": VIEW})  # both groups present: no complaint
    with pytest.raises(ArgseError, match="the tail group has no sample in test, so its error there would be"):
        check_samples(groups, {"the rejector part of tune": VIEW, "test": only_head})


def test_rejectors_fit_on_all_of_tune_only_without_the_gate(tmp_path, capsys):
    """evaluate.fit_sample: tune fits every rejector on all of tune, and says so; with the gate among the sources
    it is one sentence, since part of tune trained the gate."""
    base = _one_expert_run(tmp_path / "o", "f", [100, 50, 10, 5])
    assert evaluate.main(base + ["--methods", "chow", "--set", "evaluate.fit_sample=tune"]) == 0
    out = tmp_path / "o" / "f" / "evaluation"
    fitted = json.loads((out / "report.json").read_text())["samples"]["rejectors_fitted_on"]
    tune = json.loads((tmp_path / "o" / "f" / "splits.json").read_text())["splits"]["tune"]
    assert fitted["part"] == "all" and fitted["n"] == len(tune["indices"] if isinstance(tune, dict) else tune)
    assert "Rejectors fit on all of `tune`" in (out / "summary.md").read_text()
    capsys.readouterr()
    argv = base + ["--sources", "ce,gating", "--set", "evaluate.fit_sample=tune"]
    assert cli.run(evaluate.main, argv) == 2
    assert "evaluate.fit_sample=tune fits the rejectors on all of tune" in capsys.readouterr().err
