"""Data-parallel scaling: the same training run in 1 and in N torchrun processes.

    python -m benchmarks.scaling [--procs 1,2] [--epochs 4] [--out docs/scaling.md]

On a CPU-only machine: ResNet-32 on CIFAR-10-LT (the JPEG archive, or synthetic images when it
is missing), gloo backend, the cores split evenly between the processes. With CUDA GPUs:
ResNet-50 on synthetic 224x224 images held on each GPU, NCCL, one process per GPU, for
1, 2, 4, 8 GPUs (as many as there are). Throughput is training images per second of one
epoch (validation excluded), the median over epochs 2..E of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from benchmarks.__main__ import ARCHIVE, REPO, machine, write_report


def failure(procs: int, sets: list[str], done: subprocess.CompletedProcess, ranks: Path, lines: int = 25) -> str:
    """A failed launch in the children's own words: each rank's last lines (torchrun's summary of exit codes says
    only which signal ended a rank), then the launcher's."""
    parts = [f"{procs} process(es) exited {done.returncode} (--set {' '.join(sets)})"]
    for log in sorted(ranks.glob("**/attempt_*/*/std*.log")):  # <job>/attempt_<n>/<local rank>/std{out,err}.log
        text = log.read_text(errors="replace").splitlines()[-lines:]
        parts.append(f"--- rank {log.parent.name} {log.stem} ({len(text)} last lines):\n" + "\n".join(text))
    tail = (done.stdout + done.stderr).splitlines()[-lines:]
    parts.append("--- the launcher's last lines:\n" + "\n".join(tail))
    return "\n".join(parts)


def run(procs: int, epochs: int, sets: list[str], threads: int) -> dict:
    with tempfile.TemporaryDirectory() as d:
        argv = ["-m", "argse.train_experts", "--experts", "ce"]
        for s in [
            *sets,
            f"output_dir={d}/o",
            f"checkpoint_dir={d}/c",
            "name=scaling",
            "runtime.progress=false",
            f"runtime.threads={threads}",
            f"recipes.ce.epochs={epochs}",
            "recipes.ce.warmup_epochs=0",
            "recipes.ce.milestones=[]",
        ]:
            argv += ["--set", s]
        launcher = [sys.executable]
        if procs > 1:  # each rank's stdout and stderr in a file of its own, kept for a failure's message
            launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}"]
            launcher += ["--log-dir", f"{d}/ranks", "--redirects", "3"]
        # PYTHONFAULTHANDLER: a rank that aborts (SIGABRT, SIGSEGV) prints where each of its threads was
        env = os.environ | {"OMP_NUM_THREADS": str(threads), "PYTHONFAULTHANDLER": "1"}
        done = subprocess.run(launcher + argv, capture_output=True, text=True, cwd=REPO, env=env)
        if done.returncode != 0:
            raise RuntimeError(failure(procs, sets, done, Path(d) / "ranks"))
        # ce's training log, in its training folder: checkpoints/NAME/<its stage's folder>/
        stage = Path(f"{d}/o/scaling/logits/ce").resolve().name
        history = [json.loads(line) for line in Path(f"{d}/c/scaling/{stage}/metrics.jsonl").read_text().splitlines()]
        images = len(json.loads(Path(f"{d}/o/scaling/splits.json").read_text())["splits"]["train"])
    seconds = statistics.median(r["train_seconds"] for r in history[1:])
    return {"procs": procs, "images": images, "seconds": seconds, "img_s": images / seconds}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--procs", default=None, help="process counts (default: 1,2 on CPU; 1,2,4,8 GPUs up to the count)")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--quick", action="store_true", help="tiny synthetic run: a smoke test of this script")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    gpus = torch.cuda.device_count()
    if gpus:
        counts = [n for n in (1, 2, 4, 8) if n <= gpus]
        sets = [
            "model.arch=resnet50",
            "data.synthetic_lt.image_size=224",
            "data.synthetic_lt.max_per_class=500",
            "data.synthetic_lt.classes=20",
            "recipes.ce.batch_size=256",
            "runtime.device=cuda",
        ]
        what = "ResNet-50, synthetic 224x224 images on the GPU (20 classes, IF=100), global batch 256, bf16, NCCL"
    else:
        counts = [1, 2]
        if ARCHIVE.is_file() and not args.quick:
            sets = [
                "data.dataset=imagefolder_lt",
                f"data.root={ARCHIVE}",
                "data.tail_max_count=200",
                "data.many_min_count=1000",
                "data.few_max_count=200",
            ]
            what = "ResNet-32, CIFAR-10-LT (IF=100, 12,406 images), global batch 128, fp32, gloo"
        else:
            sets = ["model.depth=8", "data.synthetic_lt.image_size=16"] if args.quick else []
            what = "ResNet-8, synthetic_lt 16x16" if args.quick else "ResNet-32, synthetic_lt 32x32"
            what += ", global batch 128, fp32, gloo"
        sets += ["runtime.device=cpu", "runtime.bf16=false"]  # fp32, as the page says, on any CPU
    if args.procs:
        counts = [int(n) for n in args.procs.split(",")]
    cores = os.cpu_count() or 1
    epochs = 2 if args.quick else args.epochs
    rows = []
    for n in counts:
        threads = 0 if gpus else max(1, cores // n)
        rows.append(run(n, epochs, sets, threads) | {"threads": threads, "note": ""})
        if n > 1 and not gpus:
            # What the all-reduces of the CPU sync BatchNorm cost (per-rank BN statistics instead).
            rows.append(
                run(n, epochs, sets + ["runtime.sync_bn=false"], threads) | {"threads": threads, "note": "sync_bn off"}
            )
    base = rows[0]["img_s"]
    lines = [
        f"Machine: {machine()}",
        f"Run: {what}; training images/s, median over epochs 2..{epochs} of one run each; "
        f"ratios against the {rows[0]['procs']}-process run of the same invocation.",
        "",
        "| processes | threads each | img/s | speed-up | note |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['procs']} | {r['threads'] or '-'} | {r['img_s']:.0f} | {r['img_s'] / base:.2f}x | {r['note']} |"
        for r in rows
    ]
    write_report(lines, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
