"""Fault injection: the bad inputs and faults of issue 14, end to end on tiny synthetic runs.

    python -m benchmarks.faults [--out FILE.md]     # prints: case | rc | what the command printed

Bounded, local and CPU only (well under a minute): every case runs an entry point on a copy of
one tiny trained run, breaks one thing, and expects either one ``error: ...`` line (exit 2, no
traceback) or success. ``tests/test_faults.py`` runs every case, so CI keeps them fixed. The
unwritable and full file systems are real ones (a read-only or 64 KiB tmpfs in a user
namespace, via ``unshare``) where the machine allows it, and skipped otherwise.
"""

from __future__ import annotations

import argparse
import functools
import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

from safetensors import SafetensorError

from argse import cli, evaluate, train_experts, train_gating
from tests.tiny_run import REPO, TINY_RUN

TINY = TINY_RUN | {
    "runtime.eval_batch_size": "64",
    "recipes.ce.epochs": "1",
    "recipes.ce.batch_size": "32",
    "recipes.ce.warmup_epochs": "0",
    "recipes.ce.milestones": "[]",
    "gating.epochs": "5",
}


@dataclass
class Result:
    rc: int
    out: str
    err: str

    @property
    def message(self) -> str:
        lines = (self.err or self.out).strip().splitlines()
        return lines[-1] if lines else ""


class Workspace:
    """A scratch folder with one tiny trained run (ce, 1 epoch) that every case copies."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.base = root / "base"
        self.count = 0
        self.trained = run(train_experts.main, ["--experts", "ce", *sets(self.base)])
        if self.trained.rc != 0:
            raise RuntimeError(f"the tiny run did not train: {self.trained.err or self.trained.out}")

    def fresh(self) -> Path:
        """A copy of the trained run; returns its folder (outputs/ and checkpoints/ inside)."""
        self.count += 1
        folder = self.root / f"case{self.count}"
        shutil.copytree(self.base, folder)
        return folder


def sets(folder: Path, **extra: str) -> list[str]:
    values = TINY | {"output_dir": str(folder / "outputs"), "checkpoint_dir": str(folder / "checkpoints")} | extra
    return [arg for k, v in values.items() for arg in ("--set", f"{k}={v}")]


def run(main: Callable, argv: list[str]) -> Result:
    """An entry point in this process, as ``python -m`` runs it; a traceback is recorded as rc -1."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            rc = cli.run(main, argv)
        except BaseException:  # noqa: BLE001  what a user would see as a traceback
            rc, _ = -1, err.write(traceback.format_exc())
    return Result(rc, out.getvalue(), err.getvalue())


def run_process(argv: list[str], prefix: list[str] = ()) -> Result:
    proc = subprocess.run([*prefix, sys.executable, *argv], capture_output=True, text=True, cwd=REPO, timeout=120)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def logits(folder: Path, expert: str, split: str) -> Path:
    return folder / "outputs" / "tiny" / "logits" / expert / f"{split}.safetensors"


def rewrite(path: Path, **changes) -> None:
    from argse.logits import read_logits, write_logits

    f = read_logits(path)
    tensors = {k: changes.pop(k, getattr(f, k)) for k in ("logits", "labels", "indices")}
    meta = {k: getattr(f, k) for k in ("expert", "dataset", "split", "temperature", "class_counts", "splits_sha256")}
    write_logits(path, **tensors, **(meta | {"config": f.config} | changes))


def break_logits(folder: Path, how: str) -> None:
    from argse.logits import read_logits

    test = logits(folder, "ce", "test")
    f = read_logits(test)
    if how == "val copied over test":
        shutil.copy(logits(folder, "ce", "val"), test)
    elif how == "another run's logits":
        rewrite(test, splits_sha256="0" * 64)
    elif how == "one label changed":
        labels = f.labels.clone()
        labels[3] = (labels[3] + 1) % f.num_classes
        rewrite(test, labels=labels)
    elif how == "rows shuffled":
        order = list(range(len(f.labels)))[::-1]
        rewrite(test, logits=f.logits[order], labels=f.labels[order], indices=f.indices[order])
    else:  # 10 rows removed
        rewrite(test, logits=f.logits[10:], labels=f.labels[10:], indices=f.indices[10:])


# ---------------------------------------------------------------- the cases


@dataclass
class Case:
    name: str
    item: int
    """The item of issue 14."""
    act: Callable[[Workspace], Result]
    expect: str
    """A substring of the one error line, or of the output when ``ok``."""
    ok: bool = False
    needs: str = ""
    """'unshare': needs a user namespace; 'user': needs to run as a user who may not write everywhere."""


def _evaluate(folder: Path, *argv: str, **extra: str) -> Result:
    return run(evaluate.main, ["--sources", "ce", "--methods", "chow", *argv, *sets(folder, **extra)])


def _gating(folder: Path, *argv: str, **extra: str) -> Result:
    return run(train_gating.main, ["--experts", "ce", *argv, *sets(folder, **extra)])


def _experts(folder: Path, *argv: str, **extra: str) -> Result:
    return run(train_experts.main, ["--experts", "ce", *argv, *sets(folder, **extra)])


def anchor_leak(ws: Workspace) -> Result:
    folder = ws.fresh()
    argv = ["--config", str(REPO / "configs" / "demo.yaml"), "--set", "recipes.logit_adjust.tau=0.5"]
    return _experts(folder, *argv)


def broken_source(how: str, consumer: Callable) -> Callable[[Workspace], Result]:
    def act(ws: Workspace) -> Result:
        folder = ws.fresh()
        break_logits(folder, how)
        return consumer(folder)

    return act


def _jpeg(value: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (value, value, value)).save(buf, format="JPEG")
    return buf.getvalue()


def image_tree(root: Path, counts: dict[str, int], test: int = 4) -> Path:
    for k, (cls, n) in enumerate(counts.items()):
        for part, m in (("train", n), ("test", test)):
            (root / part / cls).mkdir(parents=True, exist_ok=True)
            for i in range(m):
                (root / part / cls / f"{i}.jpg").write_bytes(_jpeg(40 + 60 * k))
    return root


def _folder_run(folder: Path, tree: Path, *argv: str, imbalance: str = "2") -> Result:
    extra = {"data.dataset": "imagefolder_lt", "data.root": str(tree), "data.cache_dir": str(folder / "cache")}
    return _experts(folder, *argv, **extra | {"data.imbalance_factor": imbalance, "data.tail_max_count": "3"})


def stale_cache(change: str) -> Callable[[Workspace], Result]:
    def act(ws: Workspace) -> Result:
        folder = ws.root / f"tree{ws.count}"
        ws.count += 1
        tree = image_tree(folder / "tree", {"a": 6, "b": 6})
        first = _folder_run(folder, tree)
        if first.rc != 0:
            return first
        if change == "corrupted":
            (tree / "train" / "a" / "0.jpg").write_bytes(b"not an image")
        else:
            for image in (tree / "train" / "b").iterdir():
                image.unlink()
        return _folder_run(folder, tree, "--resume")

    return act


def lost_class(kind: str) -> Callable[[Workspace], Result]:
    def act(ws: Workspace) -> Result:
        folder = ws.root / f"tree{ws.count}"
        ws.count += 1
        counts = {"a": 6, "b": 6, "c": 6}
        tree = image_tree(folder / "tree", counts)
        if kind == "empty":
            (tree / "train" / "d").mkdir()
        elif kind == "test only":
            (tree / "test" / "d").mkdir()
            (tree / "test" / "d" / "0.jpg").write_bytes(_jpeg(200))
        return _folder_run(folder, tree, imbalance="10" if kind == "profile" else "2")

    return act


def _namespace(folder: Path, mount: str) -> list[str]:
    """argv prefix: a user namespace with a tmpfs (``mount`` options) on ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    script = f'mount -t tmpfs -o {mount} tmpfs "{folder}" && exec "$@"'
    return ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, "sh"]


def _process_experts(folder: Path) -> list[str]:
    return ["-m", "argse.train_experts", "--experts", "ce", *sets(folder)]


def read_only(ws: Workspace) -> Result:
    folder = ws.root / "readonly"
    return run_process(_process_experts(folder), _namespace(folder, "ro,size=64k"))


def full_disk(ws: Workspace) -> Result:
    folder = ws.root / "full"
    return run_process(_process_experts(folder), _namespace(folder, "size=48k"))


def not_permitted(ws: Workspace) -> Result:
    """A folder the user may not write: 0555 as a user, a root folder for 'nobody' as root."""
    folder = ws.root / "others"
    folder.mkdir()
    folder.chmod(0o555)
    prefix = []
    if os.geteuid() == 0:  # root writes anywhere: run the command as 'nobody'
        ws.root.chmod(0o755)
        prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    return run_process(_process_experts(folder / "sub"), prefix)


def injected_full_disk(ws: Workspace) -> Result:
    """ENOSPC from safetensors while writing last.safetensors (as its Rust writer reports it)."""
    import argse.storage

    real = argse.storage.save_file

    def full(tensors, filename, metadata=None):
        if ".last.safetensors." in filename:
            raise SafetensorError(
                f'Error while serializing: I/O error: No space left on device (os error 28) at path "{filename}"'
            )
        return real(tensors, filename, metadata=metadata)

    folder = ws.fresh()
    with mock.patch.object(argse.storage, "save_file", full):
        return _experts(folder)


def latin1_config(ws: Workspace) -> Result:
    path = ws.root / "latin1.yaml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    return _experts(ws.fresh(), "--config", str(path))


def latin1_manifest(ws: Workspace) -> Result:
    folder = ws.fresh()
    (folder / "outputs" / "tiny" / "splits.json").write_bytes(b'{"format": "caf\xe9"}')
    return _evaluate(folder)


def best_over_last(ws: Workspace) -> Result:
    folder = ws.fresh()
    ckpt = folder / "checkpoints" / "tiny" / "ce"
    shutil.copy(ckpt / "best.safetensors", ckpt / "last.safetensors")
    return _experts(folder, "--resume")


def setting(consumer: Callable, key: str, value: str) -> Callable[[Workspace], Result]:
    return lambda ws: consumer(ws.fresh(), **{key: value})


def duplicate_plugin(ws: Workspace) -> Result:
    return _experts(ws.fresh(), **{"plugins": "[tests.plugins.duplicate_ce]"})


def twice(ws: Workspace) -> Result:
    return run(train_experts.main, ["--experts", "ce,ce", *sets(ws.fresh())])


def concurrent(ws: Workspace) -> Result:
    """A second process of the run is refused while the first holds it; once the first is killed, it runs."""
    folder = ws.fresh()
    code = (
        "import sys, time; from argse import runlock; runlock.lock_run(sys.argv[1], 'train_experts'); "
        "print('held', flush=True); time.sleep(120)"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(folder / "outputs" / "tiny")], stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    try:
        holder.stdout.readline()
        refused = _gating(folder)
    finally:
        os.kill(holder.pid, signal.SIGKILL)  # as kill -9: the kernel drops its lock
        holder.wait()
    after = _gating(folder)
    return refused if after.rc == 0 else after


def outside_root(ws: Workspace) -> Result:
    root = ws.root / "lists"
    root.mkdir()
    (root / "train.txt").write_text("../../../etc/passwd 0\n")
    (root / "test.txt").write_text("x.jpg 0\n")
    extra = {"data.dataset": "list_lt", "data.root": str(root), "data.train_list": "train.txt"}
    return _experts(ws.fresh(), **extra | {"data.test_lists": "[test.txt]"})


def outputs_printed(ws: Workspace) -> Result:
    return ws.trained


def gate_printed(ws: Workspace) -> Result:
    return _gating(ws.fresh())


LOGITS = "does not match the run's split manifest"
CASES = [
    Case(
        "--set recipes.logit_adjust.tau=0.5 --experts ce on demo.yaml (&short anchor)",
        1,
        anchor_leak,
        "ce: temperature",
        ok=True,
    ),
    *(
        Case(f"evaluate --sources ce, {how}", 2, broken_source(how, _evaluate), f"field '{field}' {LOGITS}")
        for how, field in [
            ("val copied over test", "split"),
            ("another run's logits", "splits_sha256"),
            ("one label changed", "labels"),
            ("rows shuffled", "indices"),
            ("10 rows removed", "indices"),
        ]
    ),
    Case(
        "train_gating --experts ce, val copied over test",
        2,
        broken_source("val copied over test", _gating),
        f"field 'split' {LOGITS}",
    ),
    Case(
        "train_gating --experts ce, one label changed",
        2,
        broken_source("one label changed", _gating),
        f"field 'labels' {LOGITS}",
    ),
    Case(
        "image folder: image corrupted after caching",
        3,
        stale_cache("corrupted"),
        "train/a/0.jpg is not a decodable image",
    ),
    Case(
        "image folder: class emptied after caching", 3, stale_cache("emptied"), "class folder train/b holds no images"
    ),
    Case("image folder: empty class folder in train/", 4, lost_class("empty"), "class folder train/d holds no images"),
    Case(
        "image folder: class only in test/",
        4,
        lost_class("test only"),
        "class 'd' has test images but no train/d folder",
    ),
    Case(
        "image folder: IF=10 leaves a class 0 images",
        4,
        lost_class("profile"),
        "leaves class 'c' (1 class in all) with 0 training images",
    ),
    Case(
        "read-only output folder (EROFS)",
        5,
        read_only,
        "Read-only file system; make its folder writable",
        needs="unshare",
    ),
    Case(
        "output folder not writable (EACCES)",
        5,
        not_permitted,
        "Permission denied; make its folder writable",
        needs="user",
    ),
    Case(
        "full disk: 48 KiB tmpfs (ENOSPC)",
        5,
        full_disk,
        "No space left on device; files written before are intact",
        needs="unshare",
    ),
    Case(
        "full disk injected at last.safetensors (ENOSPC)",
        5,
        injected_full_disk,
        "last.safetensors: No space left on device",
    ),
    Case("config that is not UTF-8", 5, latin1_config, "is not UTF-8 text (byte 0xe9 at offset 9)"),
    Case("splits.json that is not UTF-8", 5, latin1_manifest, "splits.json is not UTF-8 text (byte 0xe9"),
    Case(
        "best.safetensors copied over last.safetensors, --resume",
        5,
        best_over_last,
        "holds weights only, not the training state --resume needs",
    ),
    Case("gating.lr=-1", 5, setting(_gating, "gating.lr", "-1"), "lr must be > 0, got -1.0"),
    Case("gating.dropout=1.5", 5, setting(_gating, "gating.dropout", "1.5"), "dropout must lie in [0, 1), got 1.5"),
    Case(
        "evaluate.rejection_grid=[]",
        5,
        setting(_evaluate, "evaluate.rejection_grid", "[]"),
        "rejection_grid must hold at least one",
    ),
    Case(
        "evaluate.mu_grid=[]", 5, setting(_evaluate, "evaluate.mu_grid", "[]"), "mu_grid must hold at least one value"
    ),
    Case("plugin registering 'ce' again", 5, duplicate_plugin, "expert 'ce' is registered twice"),
    Case(
        "gating.epochs=0 with gate learned",
        5,
        setting(_gating, "gating.epochs", "0"),
        "epochs must be >= 1 for gate 'learned'",
    ),
    Case(
        "evaluate.power_iters=0", 5, setting(_evaluate, "evaluate.power_iters", "0"), "power_iters must be >= 1, got 0"
    ),
    Case(
        "evaluate.worst_rounds=0",
        5,
        setting(_evaluate, "evaluate.worst_rounds", "0"),
        "worst_rounds must be >= 1, got 0",
    ),
    Case("--experts ce,ce", 5, twice, "'ce' is named twice in 'ce,ce'"),
    Case("second process of the same run, then the first killed (-9)", 6, concurrent, "is in use by pid"),
    Case(
        "list_lt line ../../../etc/passwd",
        7,
        outside_root,
        "train.txt line 1: image path '../../../etc/passwd' leaves data.root",
    ),
    Case("train_experts says where its outputs went", 8, outputs_printed, "ce checkpoints", ok=True),
    Case("train_gating says where its outputs went", 8, gate_printed, "mixture logits:", ok=True),
]


@functools.cache
def has_user_namespaces() -> bool:
    probe = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", "mount -t tmpfs tmpfs /mnt"]
    try:
        return subprocess.run(probe, capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def skip_reason(case: Case) -> str | None:
    """Why this machine cannot run the case, or None."""
    if case.needs == "unshare" and not has_user_namespaces():
        return "no user namespaces here (unshare)"
    if case.needs == "user" and os.geteuid() == 0 and not shutil.which("setpriv"):
        return "running as root without setpriv"
    return None


def check(case: Case, result: Result) -> str | None:
    """Why the result is wrong, or None."""
    text = result.out + result.err
    if "Traceback" in text:
        return f"traceback: {result.err.strip().splitlines()[-1]}"
    if case.ok:
        return None if result.rc == 0 and case.expect in text else f"rc {result.rc}: {result.message}"
    lines = result.err.strip().splitlines()
    if result.rc != 2 or len(lines) != 1 or not lines[0].startswith("error: "):
        return f"expected one 'error:' line and rc 2, got rc {result.rc}: {result.err.strip()[-300:]}"
    return None if case.expect in lines[0] else f"message lacks {case.expect!r}: {lines[0]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="also write the table to this markdown file")
    args = parser.parse_args(argv)
    rows, failed = ["| item | case | rc | printed |", "|---|---|---|---|"], 0
    with tempfile.TemporaryDirectory(prefix="argse-faults-") as tmp:
        ws = Workspace(Path(tmp))
        for case in CASES:
            skip = skip_reason(case)
            if skip:
                rows.append(f"| {case.item} | {case.name} | skipped | {skip} |")
                continue
            result = case.act(ws)
            wrong = check(case, result)
            failed += wrong is not None
            shown = (
                result.message
                if not case.ok
                else next((line.strip() for line in (result.out + result.err).splitlines() if case.expect in line), "")
            )
            rows.append(f"| {case.item} | {case.name} | {result.rc} | `{shown}` |" + (f" **{wrong}**" if wrong else ""))
    table = "\n".join(rows) + "\n"
    print(table)
    if args.out:
        Path(args.out).write_text(table)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
