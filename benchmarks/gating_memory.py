"""Peak memory and time of ``train_gating`` on hand-made logits of a given size, in its own process.

    python -m benchmarks.gating_memory --classes 8142 --tune 24000 --val 12000 --test 24000 --experts 3
        [--dir DIR] [--code TREE] [--rss-limit-mib MIB]

Writes a run under ``--dir`` (once per size; reused when it is there): every expert's ``tune``, ``val`` and
``test`` logits as argse.logits/1 files and the run's split manifest, imported as the run's stages (as
studies.logit_factory makes the tests' runs), so ``argse.train_gating`` accepts them. Then it builds the gate's
stage as ``argse.train_gating`` does (``argse.stages.gate.build_gate``: ``argse.gating.pipeline.run`` with the
default gating settings, balanced_nll and rich features, then the gate and the mixture's logits written and
published; a gate an earlier measurement published is removed first) in a fresh process, whose ``argse`` is the
one in ``--code`` (default: this checkout; another worktree of an argse with run stages measures another commit),
and prints that process's JSON line: seconds of the gate's build, peak RSS (ru_maxrss) and the RSS after the
imports, in MiB. A process whose RSS passes ``--rss-limit-mib`` (default: 3/4 of the machine's memory) is stopped
and the line says so, with the RSS it had reached.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
NAME = "bench"


def expert_names(experts: int) -> list[str]:
    return [f"expert_{i}" for i in range(experts)]


def class_counts(classes: int) -> list[int]:
    """Training counts of a long-tailed profile (imbalance 100), so the run has head and tail classes."""
    return [max(1, int(500 * 100 ** (-i / max(1, classes - 1)))) for i in range(classes)]


def split_rows(sizes: dict[str, int], classes: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """(labels, indices) per split: every class about equally often, class by class as the data core orders them."""
    return {
        split: (torch.arange(n) * classes // n, torch.arange(n) + 10_000_000 * s)
        for s, (split, n) in enumerate(sizes.items())
    }


def hand_made(labels: torch.Tensor, classes: int, seed: int) -> torch.Tensor:
    """Noise with the true class lifted by a random margin: accuracy and confidence vary across samples."""
    g = torch.Generator().manual_seed(seed)
    logits = 2 * torch.randn(len(labels), classes, generator=g)
    logits[torch.arange(len(labels)), labels] += 8 * torch.rand(len(labels), generator=g)
    return logits


def run_config(out_dir: Path, experts: int):
    """The run's config: the hand-made experts, the default gating settings (the same for import and measure)."""
    from argse.config.loading import load_run_config

    sets = [f"output_dir={out_dir.parent}", f"name={out_dir.name}", f"experts=[{', '.join(expert_names(experts))}]"]
    return load_run_config(None, sets + ["runtime.progress=false", "data.tail_max_count=20"])


def build(out_dir: Path, sizes: dict[str, int], classes: int, experts: int) -> None:
    """The run: splits.json and each expert's three splits, written to a folder beside it and imported as its
    stages."""
    import tempfile

    from argse.core.storage import make_dir
    from argse.data.logits import split_file, write_logits
    from argse.stages.manage import import_run
    from argse.stages.run import RunStages
    from studies.logit_factory import write_manifest

    counts, rows = class_counts(classes), split_rows(sizes, classes)
    with tempfile.TemporaryDirectory(prefix=".gating_memory-", dir=make_dir(out_dir.parent)) as tmp:
        folder = Path(tmp)
        sha = write_manifest(folder, classes, counts, rows=rows)
        for e, name in enumerate(expert_names(experts)):
            for s, (split, (labels, indices)) in enumerate(rows.items()):
                logits = hand_made(labels, classes, seed=100 * e + s)
                write_logits(
                    split_file(folder / "logits" / name, split), logits, labels, indices, expert=name,
                    dataset="synthetic_lt", split=split, temperature=1.0 + 0.25 * e, class_counts=counts,
                    splits_sha256=sha, config={},
                )  # fmt: skip
                del logits
        import_run(RunStages(run_config(out_dir, experts)), folder, None)


def measure(out_dir: Path, experts: int) -> dict:
    """The gate's stage built as ``python -m argse.train_gating`` builds it, with the default gating settings."""
    import argse
    from argse.core import terminal
    from argse.stages.gate import build_gate
    from argse.stages.run import RunStages
    from argse.stages.store import remove

    cfg = run_config(out_dir, experts)
    stages = RunStages(cfg)
    if (earlier := stages.store.find(stages.gate_key())) is not None:
        remove(earlier.folder)  # measured before: this measurement trains and publishes it again
    after_imports = rss_mib(os.getpid())
    start = time.perf_counter()
    build_gate(cfg, terminal.console())
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    code = str(Path(argse.__file__).parents[1])
    return {
        "code": code,
        "seconds": round(seconds, 1),
        "peak_rss_mib": round(peak),
        "rss_after_imports_mib": round(after_imports),
    }


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    """A process's resident memory (or its peak, ``VmHWM``) from /proc, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def watched(cmd: list[str], env: dict, cwd: Path, limit_mib: float) -> dict:
    """Run the measuring process; stop it if its RSS passes ``limit_mib`` (so the machine never runs out)."""
    start, reached = time.perf_counter(), 0.0
    child = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, text=True)
    while child.poll() is None:
        try:
            reached = max(reached, rss_mib(child.pid, "VmHWM"))
        except (FileNotFoundError, ProcessLookupError):
            break
        if reached > limit_mib:
            child.kill()
            child.wait()
            return {"stopped": f"RSS passed {limit_mib:.0f} MiB", "rss_reached_mib": round(reached),
                    "seconds": round(time.perf_counter() - start, 1)}  # fmt: skip
        time.sleep(0.05)
    out = child.communicate()[0].strip().splitlines()
    if child.returncode != 0 or not out:
        return {"failed": f"exit status {child.returncode}", "rss_reached_mib": round(reached)}
    return json.loads(out[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--classes", type=int, required=True)
    p.add_argument("--tune", type=int, required=True)
    p.add_argument("--val", type=int, required=True)
    p.add_argument("--test", type=int, required=True)
    p.add_argument("--experts", type=int, default=3)
    p.add_argument("--dir", type=Path, default=Path("/tmp/argse_gating_memory"), help="where the run folders go")
    p.add_argument("--code", type=Path, default=REPO, help="the argse checkout whose pipeline is measured")
    p.add_argument(
        "--rss-limit-mib", type=float, default=0.75 * os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**20
    )
    p.add_argument("--measure-only", action="store_true", help=argparse.SUPPRESS)  # the measuring process itself
    args = p.parse_args(argv)
    out_dir = args.dir / f"c{args.classes}_t{args.tune}_v{args.val}_s{args.test}_e{args.experts}" / NAME
    if args.measure_only:
        print(json.dumps(measure(out_dir, args.experts)))
        return 0
    if not (out_dir / "logits" / expert_names(args.experts)[-1] / "test.safetensors").is_file():  # imported last
        build(out_dir, {"tune": args.tune, "val": args.val, "test": args.test}, args.classes, args.experts)
    size = {"classes": args.classes, "tune": args.tune, "val": args.val, "test": args.test, "experts": args.experts}
    cmd = [sys.executable, str(Path(__file__).resolve()), *(f"--{k}={v}" for k, v in size.items())]
    cmd += [f"--dir={args.dir.resolve()}", "--measure-only"]  # as a script: its argse is the one of --code
    env = os.environ | {"PYTHONPATH": str(args.code.resolve())}
    print(json.dumps(size | {"code": str(args.code)} | watched(cmd, env, args.code, args.rss_limit_mib)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
