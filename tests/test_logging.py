"""What training reports beside metrics.jsonl: a plain line per epoch when stdout is not a terminal, where it
resumed from, TensorBoard events (read back with TensorBoard's own reader) and the training-curves PNG."""

from __future__ import annotations

import importlib.util
import json
import re
import sys

import pytest
import torch

from argse.config.loading import load_run_config
from argse.core import storage
from argse.core.errors import ArgseError
from argse.core.terminal import duration
from argse.data.long_tail import prepare_data
from argse.experts import ExpertContext, build_expert
from argse.training import curves, epoch_log, loop

real = importlib.util.find_spec
THREE_EPOCHS = ["recipes.ce.epochs=3"]
LINE = re.compile(
    r"^ce: epoch (\d)/3 loss (\d+\.\d{4}) val bal-acc (\d\.\d{4}) lr (\S+) \d+\.\d s ETA \d+\.\d s$", re.MULTILINE
)


def _folder(sets):
    """Where ce trains: checkpoint_dir/<name>/ce (training there again continues what is there)."""
    return load_run_config(None, sets).ckpt_dir / "ce"


def _ce(sets):
    cfg = load_run_config(None, sets)
    return build_expert("ce", ExpertContext(cfg, prepare_data(cfg), torch.device("cpu"), {"ce": _folder(sets)}))


def _stop_at_checkpoint(n: int, monkeypatch) -> None:
    """The n-th epoch's checkpoint write is killed: that epoch has been reported but not saved."""
    original, calls = loop.save_training_state, {"n": 0}

    def save(*args):
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt
        original(*args)

    monkeypatch.setattr(loop, "save_training_state", save)


def _metrics(sets) -> list[dict]:
    return [json.loads(ln) for ln in (_folder(sets) / "metrics.jsonl").read_text().splitlines()]


def test_a_line_per_epoch_off_a_terminal_and_training_again_names_the_epoch_it_resumes_from(tiny, capsys, monkeypatch):
    _stop_at_checkpoint(3, monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        _ce(tiny + THREE_EPOCHS).train()
    first = capsys.readouterr().out
    assert [m[0] for m in LINE.findall(first)] == ["1", "2", "3"]  # epoch 3 was reported, then killed
    monkeypatch.undo()
    _ce(tiny + THREE_EPOCHS).train()
    second = capsys.readouterr().out
    assert re.search(r"^ce: resumed from epoch 2 of 3 \(.*last\.safetensors\)$", second, re.MULTILINE)
    lines = LINE.findall(second)
    assert [m[0] for m in lines] == ["3"]
    record = _metrics(tiny + THREE_EPOCHS)[2]  # the line shows what metrics.jsonl holds
    assert lines[0][1:] == (
        f"{record['train_loss']:.4f}",
        f"{record['val']['balanced_acc']:.4f}",
        f"{record['lr']:.4g}",
    )


def test_log_lines_never_prints_no_epoch_line(tiny, capsys):
    _ce(tiny + THREE_EPOCHS + ["runtime.log_lines=never"]).train()
    assert not LINE.search(capsys.readouterr().out)


def test_tensorboard_events_match_metrics_after_a_killed_epoch_is_trained_again(tiny, monkeypatch):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    sets = tiny + THREE_EPOCHS + ["runtime.tensorboard=true"]
    _stop_at_checkpoint(2, monkeypatch)  # epoch 2's events are written, its checkpoint is not
    with pytest.raises(KeyboardInterrupt):
        _ce(sets).train()
    monkeypatch.undo()
    _ce(sets).train()  # resumes from epoch 1 and trains epoch 2 again
    folder = _folder(sets) / "tensorboard"
    events = EventAccumulator(str(folder))
    events.Reload()
    records = _metrics(sets)
    for tag, get in [("train/train_loss", lambda r: r["train_loss"]), ("val/balanced_acc", lambda r: r["val"]["balanced_acc"])]:  # fmt: skip
        scalars = events.Scalars(tag)
        assert [s.step for s in scalars] == [1, 2, 3]  # the first epoch 2 was purged, not kept twice
        assert [s.value for s in scalars] == pytest.approx([get(r) for r in records], rel=1e-6)


def test_tensorboard_missing_is_one_sentence(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if the package were not installed
    with pytest.raises(ArgseError, match=r"^runtime\.tensorboard is on but the tensorboard package is not installed; "
                                         r"pip install 'argse\[tensorboard\]'"):  # fmt: skip
        epoch_log.open_tensorboard(tmp_path, 1)


def test_tensorboard_missing_is_found_when_the_config_is_read(monkeypatch):
    """Before any data is loaded or anything written: the config itself is refused."""
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    with pytest.raises(
        ArgseError, match=r"^invalid config in 'runtime': tensorboard is on but the tensorboard package "
    ):
        load_run_config(None, ["runtime.tensorboard=true"])


def test_training_curves_png_is_written_beside_metrics(tiny):
    _ce(tiny + THREE_EPOCHS).train()
    png = _folder(tiny) / "training_curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    assert Image.open(png).size == (1300, 360)  # three panels: loss, learning rate, validation


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.04, "0.0 s"), (8.24, "8.2 s"), (59.9, "59.9 s"), (185, "3 min 05 s"), (8040, "2 h 14 min")]
)
def test_duration(seconds, text):
    assert duration(seconds) == text


def test_epoch_line_shows_the_record():
    record = {"epoch": 4, "train_loss": 0.123456, "lr": 0.0125, "seconds": 2.0, "val": {"balanced_acc": 0.5}}
    assert (
        epoch_log.epoch_line("la", record, 10, 12.0)
        == "la: epoch 4/10 loss 0.1235 val bal-acc 0.5000 lr 0.0125 2.0 s ETA 12.0 s"
    )


def test_non_writer_ranks_write_no_png(tmp_path, monkeypatch):

    monkeypatch.setattr(storage, "is_writer", lambda: False)
    record = {"epoch": 1, "train_loss": 1.0, "lr": 0.1, "seconds": 1.0, "val": {"balanced_acc": 0.5}}
    curves.training_curves([record], tmp_path / "c.png", "x")
    assert not (tmp_path / "c.png").exists()


def test_a_long_epoch_says_where_it_is_at_least_every_minute(tiny, monkeypatch, capsys):
    monkeypatch.setattr(epoch_log, "HEARTBEAT_S", 0.0)  # every step "a minute" later
    _ce(tiny + ["recipes.ce.epochs=1", "runtime.log_lines=always"]).train()
    lines = [line for line in capsys.readouterr().out.splitlines() if " step " in line]
    steps = int(lines[0].split("/")[2].split(",")[0])
    assert (
        len(lines) == steps
        and lines[0].startswith("ce: epoch 1/1 step 1/")
        and lines[-1].split(",")[0].endswith(f"{steps}/{steps}")
    )
    assert all(line.endswith(" into it") for line in lines)


def test_a_short_epoch_adds_no_step_lines(tiny, capsys):
    _ce(tiny + ["recipes.ce.epochs=1", "runtime.log_lines=always"]).train()
    assert " step " not in capsys.readouterr().out
