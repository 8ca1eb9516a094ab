"""A run that contradicts itself is refused: every set of files records what it was made from, and a
set left half-written by a kill is refused until ``--resume`` (or the command named) writes it again."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
from PIL import Image

from argse import adopt, cli, evaluate, predict, runlock, train_experts, train_gating
from argse.config import load_run_config
from argse.data import prepare_data
from argse.errors import ArgseError
from argse.report import read_report
from tests.conftest import tiny_overrides
from tests.tiny_run import REPO

TEAM = "ce,logit_adjust,posthoc_adjust"


def _argv(sets: list[str]) -> list[str]:
    return [x for s in sets for x in ("--set", s)]


@pytest.fixture
def run(tmp_path):
    """A tiny team, its gate, the evaluation of every source and one test image to predict."""
    sets = tiny_overrides(tmp_path, **{"experts": f"[{TEAM}]", "gating.epochs": "5"})
    argv = _argv(sets)
    assert train_experts.main(argv + ["--experts", TEAM]) == 0
    assert train_gating.main(argv + ["--experts", TEAM]) == 0
    assert evaluate.main(argv + ["--sources", f"{TEAM},gating", "--methods", "chow"]) == 0
    cfg = load_run_config(None, sets)
    image = tmp_path / "a.png"
    Image.fromarray(prepare_data(cfg).held_out["test"].images[0].permute(1, 2, 0).numpy()).save(image)
    return argv, cfg, image


def _refused(main, argv, capsys, *fragments: str) -> None:
    capsys.readouterr()
    assert cli.run(main, argv) == 2
    err = capsys.readouterr().err
    assert all(f in err for f in fragments), err


def _predict(argv, image, *extra):
    return argv + [str(image), "--method", "chow", "--out", str(image.with_suffix(".csv")), *extra]


def test_a_retrained_expert_invalidates_the_gate_the_mixture_and_the_rules(run, capsys):
    argv, cfg, image = run
    assert cli.run(predict.main, _predict(argv, image)) == 0  # consistent: it predicts
    retrain = ["--experts", "logit_adjust", "--set", "recipes.logit_adjust.seed=7", "--overwrite"]
    assert train_experts.main(argv + retrain) == 0
    stale = "logits/logit_adjust was written again after"
    _refused(evaluate.main, argv + ["--sources", "gating", "--methods", "chow"], capsys, stale,
             "rerun python -m argse.train_gating")  # fmt: skip
    _refused(predict.main, _predict(argv, image), capsys, stale,
             "rerun python -m argse.train_gating, then python -m argse.evaluate")  # fmt: skip
    _refused(predict.main, _predict(argv, image, "--source", "logit_adjust"), capsys, stale,
             "python -m argse.evaluate")  # the rules file is one set: gating's rules in it are stale too  # fmt: skip
    assert train_gating.main(argv + ["--experts", TEAM]) == 0
    assert evaluate.main(argv + ["--sources", f"{TEAM},gating", "--methods", "chow"]) == 0
    assert cli.run(predict.main, _predict(argv, image)) == 0  # brought up to date: it predicts again


def test_a_retrained_source_invalidates_the_expert_derived_from_it(run, capsys):
    argv, _, _ = run
    assert train_experts.main(argv + ["--experts", "ce", "--set", "recipes.ce.seed=7", "--overwrite"]) == 0
    _refused(evaluate.main, argv + ["--sources", "posthoc_adjust", "--methods", "chow"], capsys,
             "logits/ce was written again after", "rerun python -m argse.train_experts --experts posthoc_adjust")  # fmt: skip


# A child process that is killed (SIGKILL) right after its first file lands in ``folder``: the moment a
# set is half-written. Every write of argse goes through os.replace (argse.storage.atomic_write).
KILLED_AT_FIRST_RENAME = """
import os, signal, sys
from pathlib import Path
real, target = os.replace, Path(sys.argv[1]).resolve()

def replace(src, dst):
    real(src, dst)
    if Path(dst).resolve().parent == target:
        os.kill(os.getpid(), signal.SIGKILL)

os.replace = replace
module = __import__("argse." + sys.argv[2], fromlist=["main"])
sys.exit(module.main(sys.argv[3:]))
"""


def _killed_in(folder, module: str, argv: list[str]) -> None:
    runlock.release_all()  # the in-process commands before it keep the run's lock until released
    cmd = [sys.executable, "-c", KILLED_AT_FIRST_RENAME, str(folder), module, *argv]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]


def test_an_export_killed_after_its_first_split_is_refused_and_resume_repairs_it(run, capsys):
    argv, cfg, image = run
    retrain = argv + ["--experts", "logit_adjust", "--set", "recipes.logit_adjust.seed=7"]
    _killed_in(cfg.paths.logits_dir("logit_adjust"), "train_experts", retrain + ["--overwrite"])
    _refused(train_gating.main, argv + ["--experts", TEAM], capsys,
             "val.safetensors is not the file its set was written with",
             "rerun python -m argse.train_experts --experts logit_adjust --resume")  # fmt: skip
    _refused(predict.main, _predict(argv, image, "--source", "logit_adjust"), capsys, "is not the checkpoint")
    assert train_experts.main(retrain + ["--resume"]) == 0  # --resume repairs the set
    assert train_gating.main(argv + ["--experts", TEAM]) == 0


def test_a_gate_killed_between_its_files_is_refused(run, capsys):
    argv, cfg, image = run
    _killed_in(cfg.paths.gating, "train_gating", argv + ["--experts", TEAM, "--set", "gating.seed=3"])
    _refused(predict.main, _predict(argv, image), capsys, "gate.safetensors is not the file its set was written with",
             "rerun python -m argse.train_gating")  # fmt: skip
    _refused(evaluate.main, argv + ["--sources", "gating", "--methods", "chow"], capsys, "is not the file")


def test_a_mixture_killed_after_its_first_split_is_refused(run, capsys):
    argv, cfg, _ = run
    _killed_in(cfg.paths.logits_dir("gating"), "train_gating", argv + ["--experts", TEAM, "--set", "gating.seed=3"])
    _refused(evaluate.main, argv + ["--sources", "gating", "--methods", "chow"], capsys,
             "tune.safetensors is not the file its set was written with", "rerun python -m argse.train_gating")  # fmt: skip
    assert train_gating.main(argv + ["--experts", TEAM]) == 0
    assert evaluate.main(argv + ["--sources", "gating", "--methods", "chow"]) == 0


def test_an_evaluation_killed_after_its_first_file_leaves_the_old_set_in_use(run, capsys):
    """Killed after report.json: predict still uses the old, whole set (rules.json and its record), and
    the half-written report is refused, so a partial evaluate keeps nothing of it."""
    argv, cfg, image = run
    other = argv + ["--sources", f"{TEAM},gating", "--methods", "chow", "--set", "evaluate.test_prior=balanced"]
    _killed_in(cfg.paths.evaluation, "evaluate", other)
    with pytest.raises(ArgseError, match="report.json is not the file its set was written with"):
        read_report(cfg.paths)
    assert cli.run(predict.main, _predict(argv, image)) == 0
    capsys.readouterr()
    assert evaluate.main(argv + ["--sources", "ce", "--methods", "chow"]) == 0
    assert "dropped: every earlier result" in capsys.readouterr().out


def test_a_run_written_without_commit_records_is_refused_until_adopted(run, capsys):
    argv, cfg, image = run
    for record in cfg.out_dir.rglob("set.json"):
        record.unlink()
    _refused(evaluate.main, argv + ["--sources", "ce", "--methods", "chow"], capsys, "has no commit record (set.json)")
    assert adopt.main(argv) == 0
    assert "committed 6 set(s)" in capsys.readouterr().out  # three experts, the gate, the mixture, the evaluation
    assert cli.run(predict.main, _predict(argv, image)) == 0
    assert evaluate.main(argv + ["--sources", "ce", "--methods", "chow"]) == 0
