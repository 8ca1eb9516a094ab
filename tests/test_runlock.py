"""One process per run name (argse/runlock.py), and one sentence for file systems that refuse a write."""

import errno
import os
import signal
import subprocess
import sys

import pytest

from argse import cli, runlock, storage
from argse.errors import ArgseError

HOLD = "import sys, time; from argse import runlock; runlock.lock_run(sys.argv[1], 'holder'); print('held', flush=True); time.sleep(60)"
READ = "import sys, time; from argse import runlock; runlock.lock_run(sys.argv[1], 'predict', shared=True); print('held', flush=True); time.sleep(60)"
TRY = "import sys; from argse import runlock, errors\ntry:\n    runlock.lock_run(sys.argv[1], 'child'); print('ok')\nexcept errors.ArgseError as e:\n    print(e)"


def _holder(out_dir, code=HOLD):
    proc = subprocess.Popen([sys.executable, "-c", code, str(out_dir)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def _stop(*procs):
    for proc in procs:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def test_second_process_is_refused_and_a_killed_holder_does_not_block(tmp_path):
    out = tmp_path / "outputs" / "r"
    holder = _holder(out)
    try:
        with pytest.raises(
            ArgseError, match=rf"run 'r' is in use by pid {holder.pid} \(holder\), which holds .*\.lock"
        ):
            runlock.lock_run(out, "test")
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    runlock.lock_run(out, "test")  # the kernel dropped the killed process's lock
    assert runlock.held_fd(out) is not None


def test_readers_share_the_lock(tmp_path):
    out = tmp_path / "outputs" / "r"
    out.mkdir(parents=True)  # a reader locks only a run that is there
    first = _holder(out, READ)
    try:
        second = _holder(out, READ)  # a second predict at the same time
        runlock.lock_run(out, "predict", shared=True)  # and a third
        assert runlock.held_fd(out) is not None
        _stop(second)
    finally:
        _stop(first)


def test_a_writer_is_refused_while_readers_hold_the_lock(tmp_path):
    out = tmp_path / "outputs" / "r"
    out.mkdir(parents=True)  # a reader locks only a run that is there
    readers = [_holder(out, READ), _holder(out, READ)]
    try:
        with pytest.raises(ArgseError) as refused:
            runlock.lock_run(out, "train_gating")
        pids = " and ".join(f"pid {p.pid} (predict, reading)" for p in readers)
        assert str(refused.value).startswith(f"run 'r' is in use by {pids}, which hold ")
        assert str(refused.value).count(". ") == 0  # one sentence
    finally:
        _stop(*readers)
    runlock.lock_run(out, "train_gating")  # the readers are gone: the writer may write
    assert runlock.held_fd(out) is not None


def test_a_reader_is_refused_while_a_writer_holds_the_lock(tmp_path):
    out = tmp_path / "outputs" / "r"
    out.mkdir(parents=True)  # a reader locks only a run that is there
    writer = _holder(out)
    try:
        with pytest.raises(
            ArgseError, match=rf"run 'r' is in use by pid {writer.pid} \(holder\), which holds .*\.lock; wait for it"
        ):
            runlock.lock_run(out, "predict", shared=True)
    finally:
        _stop(writer)
    runlock.lock_run(out, "predict", shared=True)
    assert runlock.held_fd(out) is not None


def test_a_reader_of_a_run_that_does_not_exist_makes_no_folder(tmp_path):
    runlock.lock_run(tmp_path / "outputs" / "nothing", "predict", shared=True)
    assert not (tmp_path / "outputs").exists()


def test_the_same_process_may_take_its_lock_again(tmp_path):
    runlock.lock_run(tmp_path / "r", "train_experts")
    runlock.lock_run(tmp_path / "r", "train_gating")  # e.g. reproduce calls the entry points in turn
    runlock.release_all()
    assert runlock.held_fd(tmp_path / "r") is None


def test_children_share_the_parents_lock_and_others_do_not(tmp_path):
    out = tmp_path / "r"
    runlock.lock_run(out, "parent")
    fd = runlock.held_fd(out)
    child = subprocess.run(
        [sys.executable, "-c", TRY, str(out)],
        env=os.environ | {runlock.ENV: str(fd)},
        pass_fds=(fd,),
        capture_output=True,
        text=True,
    )
    assert child.stdout.strip() == "ok", child.stderr
    stranger = subprocess.run(
        [sys.executable, "-c", TRY, str(out)], env=os.environ | {runlock.ENV: "0"}, capture_output=True, text=True
    )
    assert stranger.stdout.startswith("run 'r' is in use by pid")


def test_only_rank_zero_takes_the_lock(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    runlock.lock_run(tmp_path / "r", "train_experts")
    assert runlock.held_fd(tmp_path / "r") is None


@pytest.mark.parametrize(
    "code, message",
    [
        (errno.EROFS, "Read-only file system; make its folder writable"),
        (errno.EACCES, "Permission denied; make its folder writable"),
        (errno.ENOSPC, "No space left on device; files written before are intact"),
    ],
)
def test_refused_writes_are_one_sentence_and_keep_the_old_file(tmp_path, monkeypatch, code, message):
    path = storage.write_text(tmp_path / "a.txt", "old")

    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(storage.tempfile, "mkstemp", refuse)
    with pytest.raises(ArgseError, match=rf"cannot write {path}: {message}"):
        storage.write_text(path, "new")
    assert path.read_text() == "old"


def test_refused_write_outside_argse_io_is_one_line(capsys):
    def main(argv):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/somewhere/log.txt")

    assert cli.run(main, []) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot write /somewhere/log.txt: No space left on device") and err.count("\n") == 1
