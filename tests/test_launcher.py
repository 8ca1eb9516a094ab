"""--parallel: several experts at once in child processes, dependencies respected, failures reported."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import pytest
import torch
from rich.console import Console

from argse.config.loading import load_run_config
from argse.core.errors import ArgseError
from argse.data.logits import read_logits, split_file
from argse.stages import experts as stage_experts
from argse.stages.launcher import train_in_parallel
from argse.stages.run import RunStages
from tests.conftest import REPO, tiny_overrides

PARALLEL_SETS = ["recipes.decoupling.stage1_from=ce"]


def run(tmp_path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "argse.train_experts", "--parallel", "2", "--experts", "ce,decoupling,logit_adjust"]
    for item in [*tiny_overrides(tmp_path), *PARALLEL_SETS, *extra]:
        cmd += ["--set", item]
    env = os.environ | {"PYTHONPATH": str(REPO)}
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_parallel_experts_wait_for_their_stage1_and_all_export(tmp_path):
    proc = run(tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    out = proc.stdout
    assert "training 3 experts in 2 processes" in out
    assert out.index("finished ce") < out.index("started decoupling")  # decoupling reuses ce as stage 1
    stages = RunStages(load_run_config(None, [*tiny_overrides(tmp_path), *PARALLEL_SETS]))
    for name in ("ce", "decoupling", "logit_adjust"):
        assert read_logits(split_file(stages.expert(name).folder, "test")).expert == name
        assert (tmp_path / "outputs" / "tiny" / "logs" / f"{name}.log").is_file()
    assert "balanced_acc" in out  # the parent prints the usual summary table


def test_a_failing_expert_is_named_and_its_dependants_skipped(tmp_path):
    proc = run(tmp_path, "recipes.ce.lr=1.0e+30")  # finite, so the config takes it; the loss diverges
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1
    assert "2 of 3 experts failed; ce: exit 2: error: ce: the loss became NaN" in err
    assert "logs/ce.log" in err
    cfg = load_run_config(None, [*tiny_overrides(tmp_path), *PARALLEL_SETS, "recipes.ce.lr=1.0e+30"])
    assert split_file(RunStages(cfg).expert("logit_adjust").folder, "test").is_file()


def test_experts_that_wait_on_each_other_are_refused(tmp_path):
    def expert(name: str, needs: str) -> type:
        return type(name, (), {"name": name, "requires": classmethod(lambda cls, recipe: [needs])})

    args = argparse.Namespace(parallel=2, config=None, overrides=[], rebuild=False)
    plan = [(expert("a", "b"), None), (expert("b", "a"), None)]
    cfg = load_run_config(None, [f"output_dir={tmp_path}"])
    with pytest.raises(ArgseError, match=r"the experts wait on each other \(a needs b, b needs a\)"):
        train_in_parallel(args, plan, cfg, Console(quiet=True))


# ---------------------------------------------------------------- --team: threads of one process

TEAM = ["ce", "decoupling", "logit_adjust", "posthoc_adjust"]


def _train(tmp_path, team: bool) -> dict:
    # decoupling trains its own stage 1 (with dropout) beside ce and logit_adjust; posthoc_adjust waits for ce.
    # One intra-op thread both ways: a CPU kernel may sum in another order with another thread count.
    sets = {"recipes.decoupling.stage1.dropout": "0.5", "runtime.threads": "1"}
    cfg = load_run_config(None, tiny_overrides(tmp_path, **sets))
    reports = stage_experts.run(cfg, TEAM, team=team)
    stages = RunStages(cfg)
    return {n: read_logits(split_file(stages.expert(n).folder, "test")) for n in TEAM} | {"reports": reports}


def test_a_team_trains_exactly_what_one_by_one_training_does(tmp_path):
    alone, team = _train(tmp_path / "alone", team=False), _train(tmp_path / "team", team=True)
    assert team["reports"] == alone["reports"]
    for name in TEAM:  # decoupling's stage 1 has dropout: each expert draws its masks from its own stream
        assert torch.equal(team[name].logits, alone[name].logits), name
        assert team[name].temperature == alone[name].temperature
    assert not torch.equal(team["ce"].logits, team["logit_adjust"].logits)


def test_a_failing_team_member_is_named_and_the_others_finish(tmp_path, capsys):
    cfg = load_run_config(None, tiny_overrides(tmp_path, **{"recipes.ce.lr": "1.0e+30"}))
    with pytest.raises(ArgseError, match=r"2 of 3 experts failed; ce: ce: the loss became NaN or infinite at epoch 1"):
        stage_experts.run(cfg, ["ce", "logit_adjust", "posthoc_adjust"], team=True)
    out = capsys.readouterr().out
    assert "failed ce" in out and "finished logit_adjust" in out
    assert split_file(RunStages(cfg).expert("logit_adjust").folder, "test").is_file()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--team", "--parallel", "2"], "--team and --parallel are two ways to train experts at once; choose one"),
        (["--team", "--set", "runtime.compile=true"], "--team cannot be combined with runtime.compile=true"),
        (
            "--team --set data.dataset=list_lt --set data.list_lt.train_list=t.txt --set data.list_lt.test_lists=[v.txt]".split(),
            "data.dataset=list_lt is decoded by DataLoader workers",
        ),
    ],
)
def test_team_refuses_what_it_cannot_combine_with(tmp_path, argv, message):
    cmd = [sys.executable, "-m", "argse.train_experts", "--experts", "ce"]
    for item in tiny_overrides(tmp_path):
        cmd += ["--set", item]
    proc = subprocess.run(
        cmd + argv, cwd=REPO, env=os.environ | {"PYTHONPATH": str(REPO)}, capture_output=True, text=True
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_a_team_on_a_cpu_shares_the_cores_out_and_gives_them_back(monkeypatch):
    from argse.stages.launcher import shared_cores

    before = torch.get_num_threads()
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    with shared_cores(torch.device("cpu"), experts=3, threads=0):
        assert torch.get_num_threads() == 2
    with shared_cores(torch.device("cpu"), experts=16, threads=0):
        assert torch.get_num_threads() == 1
    with shared_cores(torch.device("cpu"), experts=3, threads=before):  # runtime.threads given: kept
        assert torch.get_num_threads() == before
    assert torch.get_num_threads() == before
