"""User errors: one sentence on stderr, non-zero exit, no traceback."""

import subprocess
import sys

import pytest

from argse import cli, train_experts
from argse.config.loading import load_run_config
from argse.experts import list_experts
from argse.experts.__main__ import main as list_main
from argse.stages.run import RunStages
from argse.training.checkpoints import BEST
from tests.tiny_run import REPO


def _argv(tiny, *extra):
    argv = list(extra)
    for item in tiny:
        argv += ["--set", item]
    return argv


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--experts", "nope"], "unknown expert 'nope'; available experts:"),
        (["--set", "data.imbalance_factr=3"], "unknown config key 'data.imbalance_factr'"),
        (["--set", "recipes.ce.epoch=3"], "unknown config key 'recipes.ce.epoch'"),
        (["--set", "recipes.xyz.epochs=3"], "config 'recipes' names unknown expert 'xyz'"),
        (
            ["--config", "missing.yaml"],
            "config file missing.yaml does not exist; give a path, a run's outputs/NAME "
            "folder, or the name of a built-in config: cifar100_lt.yaml,",
        ),
        (["--experts", "ce,ce"], "'ce' is named twice in 'ce,ce'; name each expert once"),
        (["--set", "plugins=[tests.plugins.duplicate_ce]"], "expert 'ce' is registered twice: by argse.experts.ce"),
        (["--set", "experts=[ce, ce]", "--set", "name=x"], "'ce' is named twice in the config's 'experts' list"),
    ],
)
def test_user_errors_exit_2_with_one_line(tiny, capsys, extra, message):
    assert cli.run(train_experts.main, _argv(tiny, *extra)) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_no_traceback_from_a_real_process():
    proc = subprocess.run(
        [sys.executable, "-m", "argse.train_experts", "--experts", "nope"], capture_output=True, text=True
    )
    assert (
        proc.returncode == 2
        and proc.stderr.startswith("error: unknown expert 'nope'")
        and "Traceback" not in proc.stderr
    )


def test_list_experts(capsys):
    assert list_main([]) == 0
    rows = [line.split("│") for line in capsys.readouterr().out.splitlines() if line.startswith("│")]
    # Each registered name fills the name column of its own row, in order (continuation rows leave it empty).
    names = [cells[1].strip() for cells in rows if cells[1].strip()]
    assert names == list_experts()
    assert {"ce", "logit_adjust", "balanced_softmax", "decoupling"} <= set(names)


def test_print_config_names_where_each_recipe_value_came_from(tiny, tmp_path, capsys):
    argv = _argv(tiny, "--experts", "ce,logit_adjust", "--print-config") + ["--set", "recipes.logit_adjust.epochs=20"]
    assert cli.run(train_experts.main, argv) == 0
    out = capsys.readouterr().out
    assert "# resolved config of the built-in defaults --set name=tiny" in out and "name: tiny" in out
    assert "  epochs: 2  # --set recipes.ce.epochs=2" in out
    la = out[out.index("logit_adjust:\n") :]
    assert "  nesterov: true  # " + str(REPO / "experts" / "logit_adjust.yaml") in la
    assert "  epochs: 20  # --set recipes.logit_adjust.epochs=20" in la
    assert "  gamma: 0.1  # --set recipes.logit_adjust.gamma=0.1" in la
    assert "  seed: null  # default" in la
    assert not (tmp_path / "outputs").exists()  # printed only: nothing trained, nothing written


def test_a_finished_expert_is_found_not_retrained_and_rebuild_trains_it_again(tiny, tmp_path, capsys):
    assert cli.run(train_experts.main, _argv(tiny, "--experts", "ce")) == 0
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("done in ")
    stages = RunStages(load_run_config(None, tiny))
    key = stages.expert_key("ce")
    stage = stages.expert("ce")
    best = stages.store.training_folder(key) / BEST
    before = best.stat().st_mtime_ns, stage.record
    # The same command again finds the stage this config names.
    assert cli.run(train_experts.main, _argv(tiny, "--experts", "ce")) == 0
    out = capsys.readouterr().out.replace("\n", "")
    assert f"ce: found {stage.folder} (made from this config; not trained again)" in out
    assert (
        "epoch 1/2" not in out
        and (best.stat().st_mtime_ns, RunStages(load_run_config(None, tiny)).expert("ce").record) == before
    )
    # --rebuild trains it again from scratch; the stage it replaces is kept under stages/.retired/.
    assert cli.run(train_experts.main, _argv(tiny, "--experts", "ce", "--rebuild")) == 0
    assert "ce: epoch 1/2" in capsys.readouterr().out
    rebuilt = RunStages(load_run_config(None, tiny)).expert("ce")
    assert best.stat().st_mtime_ns != before[0] and rebuilt.folder == stage.folder
    assert rebuilt.record.content == before[1].content  # CPU training is deterministic: the same bytes again
    assert [p.name.startswith(f"{stage.folder.name}-") for p in (stages.store.root / ".retired").iterdir()] == [True]


def test_a_changed_recipe_is_another_stage_trained_afresh_in_its_own_folder(tiny, capsys):
    assert cli.run(train_experts.main, _argv(tiny, "--experts", "ce")) == 0
    changed = tiny + ["recipes.ce.epochs=1"]
    assert cli.run(train_experts.main, _argv(changed, "--experts", "ce")) == 0
    out = capsys.readouterr().out
    assert "ce: epoch 1/1" in out and "resumed" not in out
    first, second = RunStages(load_run_config(None, tiny)), RunStages(load_run_config(None, changed))
    assert first.expert("ce").folder != second.expert("ce").folder  # both kept: each config finds its own
    folders = [s.store.training_folder(s.expert_key("ce")) for s in (first, second)]
    assert folders[0] != folders[1] and all((f / BEST).is_file() for f in folders)


@pytest.mark.parametrize("seconds,text", [(4.21, "4.2s"), (83.4, "1m23s"), (7500, "2h05m")])
def test_elapsed(seconds, text):
    assert cli.elapsed(seconds) == text


@pytest.mark.parametrize("rank", [0, 3])
def test_a_rank_stopped_by_torchrun_is_quiet_but_rank_0(rank, monkeypatch, capsys):
    """Under torchrun a failing rank says why; of the ranks torchrun then stops, only rank 0 adds a line."""
    from argse.core import distributed

    monkeypatch.setattr(distributed, "rank", lambda: rank)

    def stopped(argv):
        raise distributed.StoppedByPeer("rank was stopped because another rank of this torchrun job failed; rerun")

    assert cli.run(stopped, []) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == (rank == 0) and ("another rank" in err) == (rank == 0)


@pytest.mark.parametrize("rank", ["0", "1"])
def test_a_config_error_under_torchrun_is_said_once_by_rank_0(rank, monkeypatch, capsys):
    """Issue 39: before the ranks join the job they all read the same config, so only rank 0 prints its sentence."""
    monkeypatch.setenv("RANK", rank)
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert cli.run(train_experts.main, ["--experts", "ce", "--set", "recipes.ce.no_such_key=1"]) == 2
    err = capsys.readouterr().err
    assert err.count("unknown config key 'recipes.ce.no_such_key'") == (rank == "0")
