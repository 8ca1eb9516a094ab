"""A run that contradicts itself is refused: every set of files records what it was made from, and a
set left half-written by a kill is refused until ``--resume`` (or the command named) writes it again."""

from __future__ import annotations

import pytest
from PIL import Image

from argse import cli, evaluate, predict, train_experts, train_gating
from argse.config import load_run_config
from argse.data import prepare_data
from argse.experts import base
from tests.conftest import tiny_overrides

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
    assert train_experts.main(argv + ["--experts", "logit_adjust", "--set", "recipes.logit_adjust.seed=7"]) == 0
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
    assert train_experts.main(argv + ["--experts", "ce", "--set", "recipes.ce.seed=7"]) == 0
    _refused(evaluate.main, argv + ["--sources", "posthoc_adjust", "--methods", "chow"], capsys,
             "logits/ce was written again after", "rerun python -m argse.train_experts --experts posthoc_adjust")  # fmt: skip


def test_an_export_killed_after_its_first_split_is_refused_and_resume_repairs_it(run, capsys, monkeypatch):
    argv, _, _ = run
    written = []
    original = base.write_logits

    def killed_after_the_first(path, *args, **kwargs):
        if written:
            raise KeyboardInterrupt
        written.append(path)
        return original(path, *args, **kwargs)

    monkeypatch.setattr(base, "write_logits", killed_after_the_first)
    retrain = argv + ["--experts", "logit_adjust", "--set", "recipes.logit_adjust.seed=7"]
    assert cli.run(train_experts.main, retrain) == 130
    monkeypatch.undo()
    _refused(train_gating.main, argv + ["--experts", TEAM], capsys,
             "val.safetensors is not the file its set was written with",
             "rerun python -m argse.train_experts --experts logit_adjust --resume")  # fmt: skip
    assert train_experts.main(retrain + ["--resume"]) == 0
    assert train_gating.main(argv + ["--experts", TEAM]) == 0


def test_a_gate_killed_between_its_files_is_refused(run, capsys, monkeypatch):
    argv, _, image = run
    from argse import filesets

    original = filesets.commit

    def killed_before_the_gate_commits(folder, *args, **kwargs):
        if folder.name == "gating":
            raise KeyboardInterrupt
        return original(folder, *args, **kwargs)

    monkeypatch.setattr(filesets, "commit", killed_before_the_gate_commits)
    assert cli.run(train_gating.main, argv + ["--experts", TEAM, "--set", "gating.seed=3"]) == 130
    monkeypatch.undo()
    _refused(predict.main, _predict(argv, image), capsys, "gate.json is not the file its set was written with",
             "rerun python -m argse.train_gating")  # fmt: skip
    _refused(evaluate.main, argv + ["--sources", "gating", "--methods", "chow"], capsys, "gate.json is not the file")


def test_an_evaluation_killed_before_its_commit_is_refused_by_predict(run, capsys, monkeypatch):
    argv, _, image = run
    from argse import filesets

    original = filesets.commit

    def killed_before_the_evaluation_commits(folder, *args, **kwargs):
        if folder.name == "evaluation":
            raise KeyboardInterrupt
        return original(folder, *args, **kwargs)

    monkeypatch.setattr(filesets, "commit", killed_before_the_evaluation_commits)
    other = argv + ["--sources", f"{TEAM},gating", "--methods", "chow", "--set", "evaluate.test_prior=balanced"]
    assert cli.run(evaluate.main, other) == 130
    monkeypatch.undo()
    _refused(predict.main, _predict(argv, image), capsys, "rules.json is not the file its set was written with",
             "rerun python -m argse.evaluate")  # fmt: skip
