"""A run is a set of immutable stages found by what they were made from (argse.stages).

A kill at any moment of any stage leaves nothing half-published and the same command finishes the work; two
builders of one id do not meet; a changed recipe is a new id, after which no old gate or rule set is found;
tampered published files are refused in one sentence; readers take no lock, and the run can be moved.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from argse import cli, evaluate, inference, predict, train_experts, train_gating
from argse.config.loading import load_run_config
from argse.core import storage
from argse.data.long_tail import prepare_data
from argse.stages.run import RunStages
from argse.stages.store import RECORD, Key, Store, digest
from tests.conftest import tiny_overrides
from tests.tiny_run import REPO

TEAM = "ce,posthoc_adjust"


def _argv(sets: list[str]) -> list[str]:
    return [x for s in sets for x in ("--set", s)]


@pytest.fixture
def run(tmp_path):
    """A tiny team (ce and the expert derived from it), its gate, its evaluation and one test image."""
    sets = tiny_overrides(tmp_path, **{"experts": f"[{TEAM}]", "gating.epochs": "5", "evaluate.methods": "[chow]"})
    argv = _argv(sets)
    assert train_experts.main(argv) == 0
    assert train_gating.main(argv) == 0
    assert evaluate.main(argv) == 0
    cfg = load_run_config(None, sets)
    image = tmp_path / "a.png"
    Image.fromarray(prepare_data(cfg).held_out["test"].images[0].permute(1, 2, 0).numpy()).save(image)
    return argv, cfg, image


def _result(main, argv, capsys) -> tuple[int, str]:
    capsys.readouterr()
    rc = cli.run(main, argv)
    out = capsys.readouterr()
    return rc, " ".join((out.out + out.err).split())  # rich wraps long lines


def _predict(argv, image, *extra):
    return argv + [str(image), "--method", "chow", "--out", str(image.with_suffix(".csv")), *extra]


def _published(cfg) -> dict[str, str]:
    """Every published stage folder -> its content digest, each folder checked whole."""
    store = Store(cfg.out_dir, cfg.ckpt_dir)
    out = {}
    for stage in store.stages():
        store.verify(stage)
        assert set(stage.record.files) == {p.name for p in stage.folder.iterdir() if p.name != RECORD}
        assert stage.record.content == digest(stage.record.files)
        out[stage.folder.name] = stage.record.content
    return out


# ---------------------------------------------------------------- ids and finding


def test_a_rerun_finds_every_stage_and_builds_nothing(run, capsys):
    argv, cfg, _ = run
    before = _published(cfg)
    for main, what in [(train_experts.main, "ce: found"), (train_gating.main, "gate: found"),
                       (evaluate.main, "evaluation: found")]:  # fmt: skip
        rc, text = _result(main, argv, capsys)
        assert rc == 0 and what in text and ("not trained again" in text or "not run again" in text), text
    assert _published(cfg) == before


def test_the_same_content_gives_the_same_bytes(tmp_path):
    """safetensors writes its metadata map in random order; argse sorts it, so a file's digest is its content's."""
    meta = {f"k{i}": str(i) for i in range(30)}
    digests = set()
    for i in range(4):
        path = tmp_path / f"{i}.safetensors"
        storage.save_tensors(
            path, {"b": torch.ones(3), "a": torch.arange(4)}, dict(reversed(meta.items())) if i % 2 else meta
        )
        digests.add(storage.file_sha256(path))
    assert len(digests) == 1


def test_a_changed_recipe_is_a_new_stage_and_nothing_downstream_is_found(run, capsys):
    argv, cfg, image = run
    changed = argv + ["--set", "recipes.ce.seed=7"]
    old = RunStages(cfg).expert("ce").folder.name
    rc, text = _result(train_experts.main, changed + ["--experts", "ce"], capsys)
    assert rc == 0 and "ce: temperature" in text
    new_cfg = load_run_config(None, [*cfg_sets(argv), "recipes.ce.seed=7"])
    assert RunStages(new_cfg).expert("ce").folder.name != old
    # posthoc_adjust is made from ce: under the new ce it does not exist yet, and neither do the gate or the rules
    rc, text = _result(train_gating.main, changed, capsys)
    assert rc == 2 and "no expert 'posthoc_adjust' yet" in text and "--experts posthoc_adjust" in text, text
    rc, text = _result(predict.main, _predict(changed, image), capsys)
    assert rc == 2 and "no expert 'posthoc_adjust' yet" in text, text
    rc, text = _result(predict.main, _predict(changed, image, "--source", "ce"), capsys)
    assert rc == 2 and "this config has no evaluation of 'ce' yet" in text and "python -m argse.evaluate" in text
    # the old config still finds all of its own stages, untouched
    assert cli.run(predict.main, _predict(argv, image)) == 0
    # the new team made, everything downstream is new
    assert train_experts.main(changed) == 0 and train_gating.main(changed) == 0 and evaluate.main(changed) == 0
    assert cli.run(predict.main, _predict(changed, image)) == 0
    kinds = sorted(s.record.kind for s in Store(cfg.out_dir, cfg.ckpt_dir).stages())
    assert kinds == ["evaluation"] * 2 + ["expert"] * 4 + ["gate"] * 2 + ["splits"]


def cfg_sets(argv: list[str]) -> list[str]:
    return [argv[i + 1] for i in range(0, len(argv), 2)]


def test_rebuild_of_a_deterministic_expert_keeps_its_content_and_downstream_ids(run, capsys):
    """CPU training is deterministic: rebuilt, ce has the same bytes, so the gate and rules stay found."""
    argv, cfg, image = run
    before = _published(cfg)
    rc, text = _result(train_experts.main, argv + ["--experts", "ce", "--rebuild"], capsys)
    assert rc == 0 and "ce: temperature" in text
    assert _published(cfg) == before
    assert len(list((cfg.out_dir / "stages" / ".retired").iterdir())) == 1  # the replaced folder, until pruned
    assert cli.run(predict.main, _predict(argv, image)) == 0


def test_a_partial_evaluation_is_its_own_stage(run, capsys):
    argv, cfg, image = run
    rc, text = _result(evaluate.main, argv + ["--sources", "ce"], capsys)
    assert rc == 0 and "kept" not in text and "ignored" not in text
    report = json.loads((cfg.out_dir / "evaluation" / "report.json").read_text())
    assert {r["source"] for r in report["results"]} == {"ce"}
    evaluations = [s for s in Store(cfg.out_dir, cfg.ckpt_dir).stages() if s.record.kind == "evaluation"]
    assert len(evaluations) == 2
    # predict finds the evaluation of the config's default sources, and the partial one for --source ce
    assert cli.run(predict.main, _predict(argv, image)) == 0
    assert cli.run(predict.main, _predict(argv, image, "--source", "ce")) == 0


# ---------------------------------------------------------------- tampering


def test_tampered_published_files_are_one_sentence(run, capsys):
    argv, cfg, image = run
    stages = RunStages(cfg)
    model = stages.expert("ce").file("model.safetensors")
    data = model.read_bytes()
    model.write_bytes(data[:-8] + bytes(8))
    rc, text = _result(predict.main, _predict(argv, image), capsys)
    assert rc == 2 and f"{model} is not the file its stage was published with" in text, text
    model.write_bytes(data)
    rules = stages.evaluation().file("rules.json")
    rules.write_text(rules.read_text().replace('"chow"', '"chow" '))
    rc, text = _result(predict.main, _predict(argv, image), capsys)
    assert rc == 2 and "rules.json is not the file its stage was published with" in text, text


def test_a_damaged_stage_record_or_a_renamed_folder_is_refused(run, capsys):
    argv, cfg, image = run
    gate = RunStages(cfg).gate()
    record = json.loads((gate.folder / RECORD).read_text())
    (gate.folder / RECORD).write_text(json.dumps(record | {"files": "x"}))
    rc, text = _result(evaluate.main, argv + ["--sources", "gating"], capsys)
    assert rc == 2 and f"stage record {gate.folder / RECORD}: field 'files': input should be an object, got 'x'" in text
    (gate.folder / RECORD).write_text(json.dumps(record))
    other = Key("gate", "gate", {"another": 1}).folder
    gate.folder.rename(gate.folder.parent / other)
    shutil.copytree(gate.folder.parent / other, gate.folder)  # a copy under the old name holds the other's record
    (gate.folder / RECORD).write_text(json.dumps(record | {"id": "0" * 64}))
    rc, text = _result(evaluate.main, argv + ["--sources", "gating"], capsys)
    assert rc == 2 and "renamed or copied by hand" in text, text


# ---------------------------------------------------------------- kills and concurrent builders

# A child process that dies as by kill -9 (os._exit: no cleanup, no finally) just before the Nth write, copy or
# rename of argse; with N past the end it runs to completion and prints how many there were.
KILL_AT = """
import os, shutil, sys
from argse.core import storage
from argse import cli
import argse.stages.store as store
n, count = int(sys.argv[1]), [0]
def tick():
    count[0] += 1
    if count[0] == n:
        os._exit(137)
def wrap(f):
    def g(*a, **k):
        tick()
        return f(*a, **k)
    return g
storage.atomic_write = wrap(storage.atomic_write)
store.os = type(os)("os_in_store")
store.os.__dict__.update(os.__dict__)
store.os.rename = wrap(os.rename)
store.shutil = type(shutil)("shutil_in_store")
store.shutil.__dict__.update(shutil.__dict__)
import argse.stages.experts as experts
experts.shutil = type(shutil)("shutil_in_experts")
experts.shutil.__dict__.update(shutil.__dict__)
experts.shutil.copyfile = wrap(shutil.copyfile)
module = __import__("argse." + sys.argv[2], fromlist=["main"])
rc = cli.run(module.main, sys.argv[3:])
print("writes", count[0])
sys.exit(rc)
"""


def _killed_at(n: int, module: str, argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", KILL_AT, str(n), module, *argv], cwd=REPO, capture_output=True,
                          text=True, timeout=300)  # fmt: skip


COMMANDS = [("train_experts", ["--experts", "ce"]), ("train_gating", []), ("evaluate", ["--sources", "ce,gating"])]


def _comparable(published: dict[str, str], cfg) -> dict[str, str]:
    """Stage contents, but an evaluation's by its rules and curves: its report records how long it took."""
    out = {}
    for name, content in published.items():
        if name.startswith("evaluation-"):
            files = json.loads((cfg.out_dir / "stages" / name / RECORD).read_text())["files"]
            content = digest([files["rules.json"], files["rc_curves.csv"]])
        out[name] = content
    return out


def _kills(tmp_path, module, extra, every: bool) -> None:
    """Kill the command before each of its writes (``every``) or before its first, middle and last one (the
    rename that publishes); after each kill the same command finishes, and every stage equals the one a run
    without a kill published."""
    sets = tiny_overrides(tmp_path / "ref", **{"experts": "[ce]", "gating.epochs": "3", "evaluate.methods": "[chow]",
                                               "recipes.ce.epochs": "2"})  # fmt: skip
    reference = tmp_path / "ref"
    reference.mkdir()
    for main in (train_experts.main, train_gating.main, evaluate.main):
        if main.__module__.endswith(module):
            break
        assert main(_argv(sets)) == 0
    base = tmp_path / "base"
    shutil.copytree(reference, base, symlinks=True)
    full = _killed_at(10**6, module, [*_argv(sets), *extra])
    assert full.returncode == 0, full.stderr[-2000:]
    total = int(full.stdout.split("writes")[-1])
    ref_cfg = load_run_config(None, sets)
    want = _comparable(_published(ref_cfg), ref_cfg)
    assert total >= 4
    for n in range(1, total + 1) if every else sorted({1, (total + 1) // 2, total}):
        case = tmp_path / f"kill{n}"
        shutil.copytree(base, case, symlinks=True)
        moved = [s.replace(str(reference), str(case)) for s in sets]
        cfg = load_run_config(None, moved)
        killed = _killed_at(n, module, [*_argv(moved), *extra])
        assert killed.returncode == 137, (n, killed.stderr[-2000:])
        _published(cfg)  # whatever is published is whole
        again = _killed_at(10**6, module, [*_argv(moved), *extra])
        assert again.returncode == 0, (n, again.stderr[-2000:])
        assert _comparable(_published(cfg), cfg) == want, n  # the same stages, to the byte, as without a kill
        shutil.rmtree(case)


@pytest.mark.parametrize(("module", "extra"), COMMANDS)
def test_a_kill_publishes_nothing_half_and_the_same_command_finishes(tmp_path, module, extra):
    _kills(tmp_path, module, extra, every=False)


@pytest.mark.slow
@pytest.mark.parametrize(("module", "extra"), COMMANDS)
def test_a_kill_at_every_write_publishes_nothing_half_and_the_same_command_finishes(tmp_path, module, extra):
    _kills(tmp_path, module, extra, every=True)


def test_two_builders_of_one_id_do_not_meet(run, capsys):
    argv, cfg, _ = run
    changed = argv + ["--set", "gating.seed=3"]
    key = RunStages(load_run_config(None, [*cfg_sets(argv), "gating.seed=3"])).gate_key()
    store = Store(cfg.out_dir, cfg.ckpt_dir)
    with store.building(key):  # another builder holds this id
        rc, text = _result(train_gating.main, changed, capsys)
        assert rc == 2 and f"stage {key.folder} is being built by pid {os.getpid()}" in text, text
    rc, text = _result(train_gating.main, changed, capsys)
    assert rc == 0


def test_two_processes_building_one_evaluation_leave_one_whole_stage(run):
    argv, cfg, _ = run
    cmd = [sys.executable, "-m", "argse.evaluate", *argv, "--set", "evaluate.test_prior=balanced"]
    procs = [subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in "ab"]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    for rc, err in results:
        assert rc == 0 or (rc == 2 and "is being built by pid" in err), err
    evaluations = [s for s in Store(cfg.out_dir, cfg.ckpt_dir).stages() if s.record.kind == "evaluation"]
    assert len(evaluations) == 2  # the run's own and the balanced one, each whole
    _published(cfg)


def test_train_evaluate_and_predict_run_side_by_side_on_one_run(run, capsys):
    """Readers take no lock: predict and evaluate run while train_experts trains another expert of the run."""
    argv, cfg, image = run
    trainer = subprocess.Popen(
        [sys.executable, "-m", "argse.train_experts", *argv, "--experts", "logit_adjust"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert cli.run(predict.main, _predict(argv, image)) == 0
        assert cli.run(evaluate.main, argv + ["--sources", "ce", "--set", "evaluate.test_prior=balanced"]) == 0
    finally:
        assert trainer.wait(timeout=300) == 0, trainer.stderr.read()[-2000:]
    _published(cfg)


# ---------------------------------------------------------------- readable, relocatable, prunable


def test_a_moved_run_predicts_the_same_and_a_read_only_run_is_not_written(run, tmp_path):
    argv, cfg, image = run
    here = inference.load(cfg.out_dir, rate=0.2, method="chow").predict(Image.open(image))
    moved = tmp_path / "elsewhere" / "tiny"
    shutil.copytree(cfg.out_dir, moved, symlinks=True)
    shutil.rmtree(cfg.out_dir)
    shutil.rmtree(cfg.ckpt_dir)  # predict needs no checkpoint folder: the kept weights are in the stages
    before = sorted(str(p) for p in moved.rglob("*"))
    there = inference.load(moved, rate=0.2, method="chow").predict(Image.open(image))
    assert there == here
    assert sorted(str(p) for p in moved.rglob("*")) == before  # no lock file, nothing written


def test_the_stages_command_lists_and_prunes(run, capsys):
    argv, cfg, _ = run
    assert train_experts.main(argv + ["--experts", "ce", "--set", "recipes.ce.seed=7"]) == 0
    from argse.stages import __main__ as stages_cmd

    rc, text = _result(stages_cmd.main, argv, capsys)
    assert rc == 0 and text.count("current") == 5 and text.count("not named") == 1, text
    old = next(p for p in (cfg.out_dir / "stages").iterdir() if p.name.startswith("expert-ce-")
               and p.name != RunStages(cfg).expert("ce").folder.name)  # fmt: skip
    rc, text = _result(stages_cmd.main, argv + ["prune", "--dry-run"], capsys)
    assert rc == 0 and f"would remove {old}" in text and old.exists()
    rc, text = _result(stages_cmd.main, argv + ["prune"], capsys)
    assert rc == 0 and not old.exists() and not (cfg.ckpt_dir / old.name).exists()
    _published(cfg)
    assert train_gating.main(argv) == 0  # what the config names is all still there


def test_importing_an_older_run_folder_gives_stages_the_commands_find(run, tmp_path, capsys):
    argv, cfg, image = run
    old = tmp_path / "old"
    (old / "logits").mkdir(parents=True)
    for name in ("splits.json", "preprocess.json"):
        shutil.copyfile(cfg.out_dir / name, old / name)
    for name in ("ce", "posthoc_adjust", "gating"):
        shutil.copytree(cfg.out_dir / "logits" / name, old / "logits" / name)
    shutil.copytree(cfg.out_dir / "gating", old / "gating")
    sets = [*cfg_sets(argv), "name=imported"]
    from argse.stages import __main__ as stages_cmd

    rc, text = _result(stages_cmd.main, _argv(sets) + ["import", str(old)], capsys)
    assert rc == 0 and text.count("imported:") == 4, text
    assert evaluate.main(_argv(sets)) == 0
    mine = json.loads((cfg.out_dir / "evaluation" / "rules.json").read_text())
    theirs = json.loads((cfg.out_dir.parent / "imported" / "evaluation" / "rules.json").read_text())
    assert mine == theirs
    rc, text = _result(stages_cmd.main, _argv([*sets, "recipes.ce.epochs=9"]) + ["import", str(old)], capsys)
    assert rc == 2 and "made with recipes.ce.epochs=2, this config resolves 9" in text, text
    # A gate.json of an argse before the gate format cannot be read once imported: nothing is imported.
    gate_json = old / "gating" / "gate.json"
    info = json.loads(gate_json.read_text())
    info.pop("format")
    gate_json.write_text(json.dumps(info))
    sets = [*cfg_sets(argv), "name=imported_old_gate"]
    rc, text = _result(stages_cmd.main, _argv(sets) + ["import", str(old)], capsys)
    assert rc == 2 and f"{gate_json} cannot be imported (has no field 'format'), so nothing was" in text, text
    assert not (cfg.out_dir.parent / "imported_old_gate" / "stages").exists()


def test_a_run_folder_of_an_older_layout_is_one_sentence(tmp_path, capsys):
    sets = tiny_overrides(tmp_path, **{"recipes.ce.epochs": "1"})
    (tmp_path / "outputs" / "tiny" / "logits" / "ce").mkdir(parents=True)
    rc, text = _result(train_experts.main, _argv(sets) + ["--experts", "ce"], capsys)
    assert rc == 2 and "is not a link to a stage (a run of an older argse" in text, text
    assert Path(tmp_path / "outputs" / "tiny" / "logits" / "ce").is_dir()
