"""The fast selective search against today's implementation, frozen in benchmarks/selective_reference.py:
the same rules and AURCs within 1e-9 (issue: selective evaluation at the speed of its data)."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import signal
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from argse.config.sections import EvaluateConfig
from argse.data.groups import head_tail_groups
from argse.data.logits import LogitsFile
from argse.data.metrics import lt_weights
from argse.gating.network import FEATURE_ROWS, features_of, gating_features
from argse.selective import rejectors, sweep
from argse.selective import views as group_views
from argse.selective.allocator import USER_SETTINGS, is_glibc, keep_freed_memory
from argse.selective.sweep import AURC_TAIL, VIEW_ROWS, curve_aurcs, fit_options, source_view
from benchmarks import selective_reference as reference

CLASSES = 30
ARGSE = SimpleNamespace(
    group_view=group_views.group_view, fit_rule=rejectors.fit_rule, evaluate_rule=rejectors.evaluate_rule
)
COUNTS = [int(500 * 100 ** (-i / (CLASSES - 1))) for i in range(CLASSES)]
GROUPS = head_tail_groups(torch.tensor(COUNTS), tail_max_count=20)


def fake(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, CLASSES, (n,), generator=g)
    logits = torch.randn(n, CLASSES, generator=g)
    logits[torch.arange(n), labels] += 2.5 * torch.rand(n, generator=g)
    weight = lt_weights(labels, torch.tensor(COUNTS)).numpy()
    return torch.softmax(logits.double(), 1).numpy(), labels.numpy(), weight


def views(module, n: int, seed: int):
    probs, labels, weight = fake(n, seed)
    return module.group_view(probs, labels, GROUPS.class_group(), GROUPS.k, weight)


# The search as it was (no coarse grid, one start): what the reference implements.
TODAY = dataclasses.replace(fit_options(EvaluateConfig()), coarse=0, starts=1)


def curve(module, fit, test, method: str, rates: list[float], opts=TODAY) -> list[dict]:
    rows = []
    for rate in rates:
        rule = module.fit_rule(method, fit, rate, opts)
        rows.append({"target_rate": rate, **module.evaluate_rule(rule, test), "rule": rule})
    return rows


def normalised(rule) -> np.ndarray:
    """A rule's (alpha, b, t) with alpha_0 = 1: rules equal up to scale compare equal."""
    return np.concatenate([rule.alpha, rule.b, [rule.t]]) / rule.alpha[0]


@pytest.mark.parametrize("seed", [0])
def test_rules_and_aurcs_equal_the_reference_except_where_an_exact_tie_breaks(seed):
    rates = sorted(set(EvaluateConfig().rejection_grid) | set(AURC_TAIL))
    new_fit, new_test = views(ARGSE, 800, 2 * seed), views(ARGSE, 800, 2 * seed + 1)
    ref_fit, ref_test = views(reference, 800, 2 * seed), views(reference, 800, 2 * seed + 1)
    for method, metric in (
        ("chow", None),
        ("plugin_balanced", "balanced_error"),
        ("plugin_worst", "worst_group_error"),
    ):
        ours, theirs = (
            curve(ARGSE, new_fit, new_test, method, rates),
            curve(reference, ref_fit, ref_test, method, rates),
        )
        for a, b in zip(ours, theirs, strict=True):
            if method == "chow" and a["target_rate"] > 0:  # Chow's rule has nothing to tie
                np.testing.assert_allclose(normalised(a["rule"]), normalised(b["rule"]), rtol=0, atol=1e-9)
            elif np.abs(normalised(a["rule"]) - normalised(b["rule"])).max() > 1e-9:
                # An exact tie, which the reference broke by BLAS rounding, and so differently on different CPUs:
                # at rate 0 every candidate accepts the whole fitting sample, so b does not change the objective;
                # elsewhere two candidates of Algorithm 2 can reach the same errors (seen at rate 0.25 on an AMD
                # EPYC). Both rules then fit equally well: the same objective on the fitting sample.
                ours_there = reference.Rule(a["rule"].alpha, a["rule"].b, a["rule"].t)  # applied as the reference does
                fit_a = reference.evaluate_rule(ours_there, ref_fit)[metric or "error"]
                fit_b = reference.evaluate_rule(b["rule"], ref_fit)[metric or "error"]
                assert abs(fit_a - fit_b) <= 1e-9, (method, a["target_rate"])
        if method == "chow":
            for key, value in curve_aurcs(theirs).items():
                assert abs(curve_aurcs(ours)[key] - value) <= 1e-9, key


def test_weighted_threshold_is_the_reference_one_bit_for_bit():
    rng = np.random.default_rng(0)
    for shape in [(7,), (3, 50), (2, 4, 300)]:
        s = np.round(rng.normal(size=shape), 2)  # rounded: many exact ties
        w = rng.uniform(0.1, 5.0, shape[-1])
        for rate in (0.0, 0.05, 0.5, 0.95):
            np.testing.assert_array_equal(group_views.threshold(s, rate, w), reference.threshold(s, rate, w))


def test_threshold_with_infinite_scores_and_signed_zeros_is_the_reference_one():
    """Keys carry the column in the low mantissa bits: an infinite score would become NaN, so such rows are sorted
    exactly; -0.0 and 0.0 are equal scores in any order."""
    rng = np.random.default_rng(2)
    s = np.round(rng.normal(size=(6, 40)), 1)
    s[0, 3], s[1, :5], s[2, 7], s[3, ::3] = -np.inf, np.inf, np.inf, -0.0
    s[4, ::2] = 0.0
    w = rng.uniform(0.1, 5.0, 40)
    for rate in (0.0, 0.1, 0.5, 0.9):
        np.testing.assert_array_equal(group_views.threshold(s, rate, w), reference.threshold(s, rate, w))


def test_rules_that_share_an_alpha_share_its_tops_with_the_same_objectives(monkeypatch):
    """A local-search grid (15 alphas x 15 mus) gives what each rule scored alone gives, bit for bit."""
    view = views(ARGSE, 700, 4)
    la, mu = (x.ravel() for x in np.meshgrid(np.linspace(-1, 1, 15), np.linspace(-2, 2, 15)))
    alpha = np.ones((225, GROUPS.k))
    alpha[:, 1] = np.exp(la)
    b = alpha.copy()
    b[:, 1] -= mu
    assert rejectors.shared_tops(view, alpha) is not None
    monkeypatch.setattr(rejectors, "BLOCK", 700 * 20)  # blocks that cut across the alphas
    for beta in (None, np.full(GROUPS.k, 0.5)):
        shared = rejectors.objectives(view, alpha, b, 0.3, beta)
        with monkeypatch.context() as m:
            m.setattr(rejectors, "shared_tops", lambda v, a: None)
            alone = rejectors.objectives(view, alpha, b, 0.3, beta)
        for x, y in zip(shared, alone, strict=True):
            np.testing.assert_array_equal(x, y)


def test_numpy_blas_is_single_threaded_unless_the_user_set_it():
    import subprocess
    import sys

    probe = "import argse, os; print(os.environ['OPENBLAS_NUM_THREADS'])"
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    assert subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True).stdout == "1\n"
    env["OPENBLAS_NUM_THREADS"] = "3"
    assert subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True).stdout == "3\n"


# A loop shaped like the search's: a few half-MiB arrays made and freed, block after block; its page faults.
FREED_BLOCKS = """
import resource, sys
import numpy as np
from argse.selective.allocator import keep_freed_memory
if sys.argv[1] == "kept":
    assert keep_freed_memory()
for _ in range(3):
    [np.ones(1 << 16) for _ in range(4)]
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(200):
    arrays = [np.ones(1 << 16) for _ in range(4)]
    del arrays
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not is_glibc(), reason="the thresholds are glibc's")
def test_freed_block_arrays_are_kept():
    """With glibc's own thresholds the block arrays are faulted in afresh (the heap's free top is trimmed, about
    128 pages each); with argse's they are reused. Each sweep process sets them before its sweep
    (sweep.source_pool)."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in (*USER_SETTINGS, "LD_PRELOAD")}
    run = [sys.executable, "-c", FREED_BLOCKS]
    default, kept = (int(subprocess.run([*run, how], env=env, capture_output=True, text=True, check=True).stdout)
                     for how in ("default", "kept"))  # fmt: skip
    if default < 50_000:  # e.g. transparent huge pages for every mapping: few faults to save
        pytest.skip(f"glibc's own thresholds cost only {default} page faults here")
    assert kept < default / 100


@pytest.mark.skipif(not is_glibc(), reason="off glibc nothing is ever set")
def test_a_user_tuned_malloc_is_left_as_set(monkeypatch):
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    assert not keep_freed_memory()


def test_candidate_blocks_do_not_change_objectives(monkeypatch):
    """Scoring candidates block by block (BLOCK) gives every candidate the objective it has alone."""
    view = views(ARGSE, 500, 3)
    alpha = np.exp(np.random.default_rng(1).normal(size=(40, GROUPS.k)))
    b = alpha - np.linspace(-1, 1, 40)[:, None] * np.eye(GROUPS.k)[1]
    whole = rejectors.objectives(view, alpha, b, 0.3, np.full(GROUPS.k, 0.5))
    monkeypatch.setattr(rejectors, "BLOCK", 500 * 3)
    blocked = rejectors.objectives(view, alpha, b, 0.3, np.full(GROUPS.k, 0.5))
    np.testing.assert_allclose(blocked[0], whole[0], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(blocked[1], whole[1])
    assert rejectors.first_min(np.array([0.3, 0.2 + 1e-14, 0.2, 0.5])) == 1  # a tie goes to the earlier one


def test_source_view_in_row_blocks_equals_the_whole_softmax():
    n = 2 * VIEW_ROWS + 17
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(n, CLASSES, generator=g) * 3, torch.randint(0, CLASSES, (n,), generator=g)
    f = LogitsFile(None, logits, labels, torch.arange(n), "x", "d", "tune", CLASSES, 1.7, COUNTS, "s", {})
    positions = torch.randperm(n, generator=g)[: n - 5]
    for protocol in ("argse", "paper"):
        ecfg = EvaluateConfig(protocol=protocol)
        view = source_view(f, positions, GROUPS, ecfg)
        probs = torch.softmax((logits if protocol == "paper" else logits / 1.7).double(), 1)[positions].numpy()
        whole = reference.group_view(  # the summaries as they were made: every group gathered, then summed
            probs,
            labels[positions].numpy(),
            GROUPS.class_group(),
            GROUPS.k,
            lt_weights(labels[positions], torch.tensor(COUNTS)).numpy(),
        )
        for field in ("top", "mass", "hit", "group", "weight"):
            np.testing.assert_array_equal(getattr(view, field), getattr(whole, field))


def test_gate_features_in_blocks_equal_the_whole():
    n = FEATURE_ROWS + 33
    logp = torch.log_softmax(torch.randn(3, n, CLASSES, dtype=torch.float64) * 2, 2)
    for posteriors in (False, True):
        torch.testing.assert_close(
            features_of(logp, 5, posteriors), gating_features(logp.exp(), 5, posteriors), rtol=0, atol=0
        )


def test_the_coarse_grid_is_never_worse_on_the_fitting_sample():
    """The default search (a coarse grid, three starts) against the search as it was, on its own objective."""
    fit, test = views(ARGSE, 800, 5), views(ARGSE, 800, 6)
    rates = [0.1, 0.3, 0.5, 0.7]
    for method, metric in (("plugin_balanced", "balanced_error"), ("plugin_worst", "worst_group_error")):
        wide = curve(ARGSE, fit, test, method, rates, fit_options(EvaluateConfig()))
        narrow = curve(ARGSE, fit, test, method, rates)
        for a, b in zip(wide, narrow, strict=True):
            assert (
                rejectors.evaluate_rule(a["rule"], fit)[metric]
                <= rejectors.evaluate_rule(b["rule"], fit)[metric] + 1e-12
            )


def _two_source_run(tmp_path) -> list[str]:
    from studies.logit_factory import write_run

    def model(scale):
        return lambda labels, g: (
            torch.randn(len(labels), 4, generator=g) + scale * torch.nn.functional.one_hot(labels, 4)
        )

    write_run(tmp_path / "o" / "p", {"ce": model(2.0), "la": model(1.0)}, 4, [100, 50, 10, 5],
              overrides=["data.tail_max_count=10"])  # fmt: skip
    return ["--set", f"output_dir={tmp_path / 'o'}", "--set", "name=p", "--set", "data.tail_max_count=10",
            "--set", "experts=[ce,la]"]  # fmt: skip


def test_sweep_processes_give_the_curves_of_one_thread(tmp_path, monkeypatch):
    """The sources swept in forked processes (one per core) and one after another on one thread: the same curves.
    Each sweep process tunes its allocator before it sweeps; the evaluating process is left as it was."""
    from argse.config.loading import load_run_config
    from argse.selective import sweep
    from argse.stages.gate import reader_of
    from argse.stages.run import RunStages

    cfg = load_run_config(None, [s for s in _two_source_run(tmp_path) if s != "--set"])
    reader = reader_of(RunStages(cfg), ["ce", "la"], ["tune", "test"])
    monkeypatch.setattr(sweep, "cpu_count", lambda: 2)
    tuned = tmp_path / "tuned"  # one file per process that set the allocator (argse.allocator), named by its pid
    tuned.mkdir()
    monkeypatch.setattr(sweep, "keep_freed_memory", lambda: (tuned / str(os.getpid())).touch())
    with sweep.source_pool(2) as pool:
        assert isinstance(pool, concurrent.futures.ProcessPoolExecutor)
    pooled = sweep.evaluate_sources(cfg, reader, ["chow", "plugin_balanced"])
    pids = {int(p.name) for p in tuned.iterdir()}
    assert pids and os.getpid() not in pids  # in the sweep processes, before their sweeps; never in this one
    monkeypatch.setattr(sweep, "cpu_count", lambda: 1)
    monkeypatch.setattr(sweep.multiprocessing, "get_all_start_methods", lambda: ["spawn"])  # no fork: threads
    with sweep.source_pool(2) as pool:
        assert isinstance(pool, concurrent.futures.ThreadPoolExecutor)
    alone = sweep.evaluate_sources(cfg, reader, ["chow", "plugin_balanced"])
    assert pooled.curves == alone.curves and pooled.aurcs == alone.aurcs
    assert {int(p.name) for p in tuned.iterdir()} == pids  # the threads left this process's allocator alone


def test_a_sweep_process_that_dies_is_one_sentence(tmp_path, monkeypatch, capsys):
    """A sweep process killed (as the system kills the largest process when memory runs out): exit 2, the
    source named, nothing written."""
    from argse import cli, evaluate

    parent = os.getpid()

    @rejectors.register_rejector("dies_in_a_child")
    def dies(view, rate, opts):
        if os.getpid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)
        raise AssertionError("expected to run in a sweep process")

    monkeypatch.setattr(sweep, "cpu_count", lambda: 2)
    try:
        assert cli.run(evaluate.main, _two_source_run(tmp_path) + ["--methods", "dies_in_a_child"]) == 2
    finally:
        rejectors.REJECTORS.unregister("dies_in_a_child")
    err = capsys.readouterr().err
    assert "stopped without a result" in err and "'ce'" in err and "Traceback" not in err
    assert not (tmp_path / "o" / "p" / "evaluation").exists()


def test_the_search_grid_and_starts_are_settings():
    opts = fit_options(EvaluateConfig(search_grid=0, search_starts=1))
    assert (opts.coarse, opts.starts) == (0, 1) and opts == TODAY
    for bad in ({"search_grid": 1}, {"search_grid": -3}, {"search_starts": -1}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            EvaluateConfig(**bad)


def test_the_equal_results_benchmark_on_a_run(tmp_path, capsys):
    """benchmarks.selective_equal on hand-made logits: every rule compared, each one apart explained."""
    from benchmarks import selective_equal

    _two_source_run(tmp_path)
    assert selective_equal.main(["--run", str(tmp_path / "o" / "p"), "--tail-max-count", "10"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert "rules at rates above 0" in last and "within 1e-9 of the reference" in last
