"""Benchmarks of argse's fast paths, each against a baseline measured in the same run.

    python -m benchmarks [--quick] [--out docs/performance.md] [--only train,stage2,...]

Every figure is the median of ``--repeats`` runs after a warm-up. Images are the CIFAR-10
archive in ../shared/datasets when present (CIFAR-10-LT, IF=100), otherwise synthetic 32x32 images.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from argse.config.loading import load_run_config
from argse.config.sections import GatingConfig, RuntimeConfig
from argse.data.long_tail import prepare_data
from argse.training import Normalize, TensorBatches, TrainRecipe, TrainTask, autocast, fit, outputs_of
from argse.training.device import free_cores, usable_cores
from argse.training.models import CifarResNet

REPO = Path(__file__).resolve().parents[1]
ARCHIVE = REPO.parent / "shared" / "datasets" / "cifar10-jpeg.tar.gz"


def median_time(fn, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def data_sets(tmp: Path, quick: bool) -> tuple[list[str], str]:
    sets = [f"output_dir={tmp}", f"checkpoint_dir={tmp}", "name=bench", "runtime.device=cpu"]
    if ARCHIVE.is_file() and not quick:
        return sets + [
            "data.dataset=imagefolder_lt",
            f"data.root={ARCHIVE}",
            "data.tail_max_count=200",  # as configs/cifar10_lt.yaml: CIFAR-10-LT's smallest class has 50 images
        ], "CIFAR-10-LT (IF=100) from the JPEG archive"
    per_class, test = (300, 20) if quick else (1200, 100)
    sets += [
        f"data.synthetic_lt.max_per_class={per_class}",
        "data.synthetic_lt.image_size=32",
        f"data.synthetic_lt.test_per_class={test}",
    ]
    return sets, "synthetic_lt 32x32"


# ---------------------------------------------------------------- 1. training throughput


def bench_train(data, device, steps: int, repeats: int, workers: tuple[int, ...]) -> dict:
    n = steps * 128
    images, labels = data.train.images[:n], data.train.labels[:n]
    dataset = pil_dataset(images, labels, data.mean, data.std)
    ref = {w: median_time(lambda w=w: reference_epoch(dataset, data.num_classes, device, w), repeats) for w in workers}
    best_workers = min(ref, key=ref.get)
    ours = median_time(lambda: argse_epoch(images, labels, data, device), repeats)
    fp32 = median_time(lambda: argse_epoch(images, labels, data, device, bf16=False), repeats)
    return {
        "images": n,
        "argse_img_s": n / ours,
        "argse_precision": _precision(device),
        "argse_fp32_img_s": n / fp32,
        "reference_img_s": n / ref[best_workers],
        "reference_workers": best_workers,
        "ratio": ref[best_workers] / ours,
        "ratio_fp32": ref[best_workers] / fp32,
    }


def _precision(device: torch.device) -> str:
    """What argse's default runtime trains in on ``device``."""
    with autocast(device, RuntimeConfig()):
        return "bf16 autocast" if torch.is_autocast_enabled(device.type) else "fp32"


def argse_epoch(images, labels, data, device, cuda_graphs: bool = False, bf16: bool = True) -> None:
    """One epoch of argse's loop: images on the device, crop/flip there, channels_last."""
    runtime = RuntimeConfig(device=str(device), progress=False, channels_last=True, cuda_graphs=cuda_graphs, bf16=bf16)
    torch.manual_seed(0)
    model = CifarResNet(data.num_classes).to(device, memory_format=torch.channels_last)
    norm = Normalize(data.mean, data.std, device, channels_last=True)
    with tempfile.TemporaryDirectory() as ckpt:
        task = TrainTask(
            name="bench",
            module=model,
            data=TensorBatches(images.to(device), labels.to(device), norm),
            loss_fn=F.cross_entropy,
            evaluate=lambda: {"balanced_acc": 0.0},
            num_classes=data.num_classes,
        )
        recipe = TrainRecipe(epochs=1, warmup_epochs=0, milestones=[])
        fit(task, recipe, Path(ckpt), seed=0, resume=False, device=device, runtime=runtime)


def pil_dataset(images: torch.Tensor, labels: torch.Tensor, mean, std) -> torch.utils.data.Dataset:
    """The usual torchvision pipeline: PIL images, RandomCrop + flip + ToTensor + Normalize per sample."""
    from PIL import Image
    from torchvision import transforms

    class PILDataset(torch.utils.data.Dataset):
        def __init__(self) -> None:
            self.imgs = [Image.fromarray(x.permute(1, 2, 0).numpy()) for x in images]
            self.tf = transforms.Compose(
                [
                    transforms.RandomCrop(32, padding=4),
                    transforms.RandomHorizontalFlip(),
                    transforms.ToTensor(),
                    transforms.Normalize(mean, std),
                ]
            )

        def __len__(self) -> int:
            return len(self.imgs)

        def __getitem__(self, i):
            return self.tf(self.imgs[i]), int(labels[i])

    return PILDataset()


def reference_epoch(dataset, num_classes: int, device, workers: int) -> None:
    """One epoch of the usual PyTorch loop: DataLoader workers, NCHW fp32, a loss.item() per step."""
    torch.manual_seed(0)
    model = CifarResNet(num_classes).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=2e-4)
    loader = torch.utils.data.DataLoader(dataset, batch_size=128, shuffle=True, num_workers=workers)
    model.train()
    for x, y in loader:
        loss = F.cross_entropy(model(x.to(device)), y.to(device))
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss.item()  # the usual per-step logging


# ---------------------------------------------------------------- 2. decoupling stage 2


def bench_stage2(cfg_sets: list[str], tmp: Path, subset: int, epochs: int, stage1_epochs: int) -> dict:
    """Stage 2 from the same briefly trained stage-1 model, with and without the feature cache."""
    from argse.experts import ExpertContext, build_expert

    results, stage1 = {}, None
    for cached in (True, False):
        cfg = load_run_config(
            None,
            cfg_sets
            + [
                f"checkpoint_dir={tmp / ('c' if cached else 'u')}",
                "runtime.progress=false",
                f"recipes.decoupling.stage2.epochs={epochs}",
                "recipes.decoupling.stage2.milestones=[]",  # the recipe's [40, 60] lie past these epochs
                f"recipes.decoupling.feature_cache={str(cached).lower()}",
                f"recipes.ce.epochs={stage1_epochs}",
                "recipes.ce.warmup_epochs=0",
                "recipes.ce.milestones=[]",
            ],
        )
        data = prepare_data(cfg)
        keep = torch.randperm(len(data.train.labels), generator=torch.Generator().manual_seed(0))[:subset]
        data.train.images, data.train.labels, data.train.indices = (
            t[keep] for t in (data.train.images, data.train.labels, data.train.indices)
        )
        folders = {name: cfg.ckpt_dir / name for name in ("ce", "decoupling")}  # their training folders
        ctx = ExpertContext(cfg, data, torch.device("cpu"), folders)
        if stage1 is None:
            ce = build_expert("ce", ctx)
            ce.train()
            stage1 = ce.model.state_dict()
        expert = build_expert("decoupling", ctx)
        expert.model = expert.new_model(0.0)
        expert.model.load_state_dict(stage1)
        start = time.perf_counter()
        expert.stage2()
        seconds = time.perf_counter() - start
        test = data.held_out["test"]
        acc = float((expert.predict_split(test).argmax(1) == test.labels).double().mean())
        results["cached" if cached else "uncached"] = (seconds, acc)
    (tc, ac), (tu, au) = results["cached"], results["uncached"]
    return {
        "images": subset,
        "epochs": epochs,
        "cached_s": tc,
        "uncached_s": tu,
        "ratio": tu / tc,
        "acc_cached": ac,
        "acc_uncached": au,
    }


# ---------------------------------------------------------------- 3. export


def bench_export(data, device, repeats: int) -> dict:
    from argse.data.logits import write_logits

    torch.manual_seed(0)
    model = CifarResNet(data.num_classes).to(device, memory_format=torch.channels_last).eval()
    split = data.held_out["test"]
    runtime = RuntimeConfig(device=str(device), eval_batch_size=1000)
    norm = Normalize(data.mean, data.std, device, channels_last=True)
    x_float = norm(split.images.to(device))

    def bare() -> None:  # in the precision export runs in (autocast), so the ratio is the pipeline's cost
        with torch.inference_mode(), autocast(device, runtime):
            for i in range(0, len(x_float), 1000):
                model(x_float[i : i + 1000])

    def export() -> None:
        logits = outputs_of(model, split.images, norm, device, runtime)
        with tempfile.TemporaryDirectory() as d:
            write_logits(
                Path(d) / "t.safetensors",
                logits,
                split.labels,
                split.indices,
                expert="x",
                dataset="d",
                split="test",
                temperature=1.0,
                class_counts=[1] * data.num_classes,
                splits_sha256="s",
                config={},
            )

    tb, te = median_time(bare, repeats), median_time(export, repeats)
    n = len(split.labels)
    return {"images": n, "bare_img_s": n / tb, "export_img_s": n / te, "ratio": tb / te}


# ---------------------------------------------------------------- 4. gating, 5. selective


def fake_logits(n: int, experts: int, classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (n,), generator=g)
    logits = torch.randn(experts, n, classes, generator=g)
    logits[:, torch.arange(n), labels] += 2.5 * torch.rand(experts, n, generator=g)
    return F.log_softmax(logits.double(), 2), labels


def bench_gating(repeats: int) -> dict:
    from argse.gating import gating_features, train_gate

    splits = {s: fake_logits(10_000, 4, 100, i) for i, s in enumerate(("tune", "val"))}

    def run() -> None:
        feats = {s: gating_features(lp.exp()) for s, (lp, _) in splits.items()}
        label_logp = {
            s: lp.gather(2, y.view(1, -1, 1).expand(4, -1, 1)).squeeze(2).t().float() for s, (lp, y) in splits.items()
        }
        train_gate(
            feats, label_logp, {s: y for s, (_, y) in splits.items()}, 100, GatingConfig(epochs=100, patience=1000)
        )

    return {"samples": 10_000, "experts": 4, "classes": 100, "epochs": 100, "seconds": median_time(run, repeats)}


# ---------------------------------------------------------------- 6. demo and memory


def bench_demo() -> dict:
    """Seconds of the three demo commands."""
    with tempfile.TemporaryDirectory() as d:
        sets = ["--set", f"output_dir={d}/o", "--set", f"checkpoint_dir={d}/c", "--set", "runtime.progress=false"]
        start = time.perf_counter()
        for module in ("argse.train_experts", "argse.train_gating", "argse.evaluate"):
            subprocess.run(
                [sys.executable, "-m", module, "--config", str(REPO / "configs/demo.yaml"), *sets],
                check=True,
                capture_output=True,
                cwd=REPO,
            )
        return {"seconds": time.perf_counter() - start}


def bench_cifar10_rss() -> dict:
    """Peak RSS of a one-epoch CIFAR-10-LT (IF=100) ResNet-32 training run, in its own process.

    Read from VmHWM of the child's own memory map: getrusage's ru_maxrss would include the
    (large) peak of this benchmark process, which Linux carries across fork and exec.
    """
    code = (
        "import re, sys; from pathlib import Path; from argse import train_experts; "
        "rc = train_experts.main(sys.argv[1:]); "
        "print(int(re.search(r'VmHWM:\\s+(\\d+)', Path('/proc/self/status').read_text()).group(1)) / 1024); sys.exit(rc)"
    )
    with tempfile.TemporaryDirectory() as d:
        sets = [
            f"output_dir={d}/o",
            f"checkpoint_dir={d}/c",
            "runtime.progress=false",
            "data.dataset=imagefolder_lt",  # configs/cifar10_lt.yaml reads torchvision's CIFAR-10; this is the archive
            f"data.root={ARCHIVE}",
            "recipes.ce.epochs=1",
            "recipes.ce.warmup_epochs=0",
            "recipes.ce.milestones=[]",
        ]
        argv = ["--config", str(REPO / "configs/cifar10_lt.yaml"), "--experts", "ce"]
        argv += [x for s in sets for x in ("--set", s)]
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", code, *argv], check=True, capture_output=True, text=True, cwd=REPO)
        return {"seconds": time.perf_counter() - start, "peak_rss_mib": float(out.stdout.strip().splitlines()[-1])}


# ---------------------------------------------------------------- report


def write_report(lines: list[str], out: str | None) -> None:
    """Print the markdown report and, with ``out``, write it there (atomically)."""
    from argse.core import storage

    text = "\n".join(lines) + "\n"
    print(text)
    if out:
        storage.write_text(out, text)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "none"
    return (
        f"CPU {cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), GPU: {gpu}"
    )


@dataclass
class Bench:
    """What every benchmark row shares: the data, the device, the sizes."""

    data: object
    device: torch.device
    cfg_sets: list[str]
    tmp: Path
    quick: bool
    repeats: int


def train_row(b: Bench) -> list[tuple]:
    r = bench_train(
        b.data, b.device, steps=2 if b.quick else 12, repeats=b.repeats, workers=(0,) if b.quick else (0, 2)
    )
    reference = (
        f"{r['reference_img_s']:.0f} img/s (PIL transforms + DataLoader, {r['reference_workers']} workers, NCHW fp32)"
    )
    return [
        (
            f"Training throughput, ResNet-32, batch 128 (argse default: channels_last, {r['argse_precision']})",
            f"{r['argse_img_s']:.0f} img/s",
            reference,
            f"{r['ratio']:.2f}x",
            ">= 1.4x",
        ),
        (
            "Training throughput, ResNet-32, batch 128 (argse with runtime.bf16=false: channels_last, fp32)",
            f"{r['argse_fp32_img_s']:.0f} img/s",
            reference,
            f"{r['ratio_fp32']:.2f}x",
            "the same arithmetic as the reference",
        ),
    ]


def threads_row(b: Bench) -> tuple:
    """Training while another process keeps one core busy: torch's default (a thread per core) against argse's
    default (a thread per free core, argse.training.device.free_cores), in the same run on the same batches."""
    n = (2 if b.quick else 8) * 128
    images, labels = b.data.train.images[:n], b.data.train.labels[:n]
    before, cores = torch.get_num_threads(), usable_cores()
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(1.0)  # the other process is running when the free cores are measured
        chosen = max(1, min(cores, round(free_cores())))
        timings = {}
        for threads in (cores, chosen):
            torch.set_num_threads(threads)
            timings[threads] = median_time(lambda: argse_epoch(images, labels, b.data, b.device), b.repeats)
    finally:
        hog.kill()
        torch.set_num_threads(before)
    return (
        f"Training with one core busy elsewhere, ResNet-32, batch 128 (argse default: {chosen} of {cores} threads)",
        f"{n / timings[chosen]:.0f} img/s",
        f"{n / timings[cores]:.0f} img/s (torch's default: {cores} threads)",
        f"{timings[cores] / timings[chosen]:.2f}x",
        ">= 1x",
    )


def stage2_row(b: Bench) -> tuple:
    q = b.quick
    # In fp32 on every device: the row compares the cache with the backbone on exact arithmetic (in bf16 the
    # two paths round their features differently, and a weak stage 1 turns that into points of accuracy).
    sets = [*b.cfg_sets, "runtime.bf16=false"]
    r = bench_stage2(sets, b.tmp, subset=64 if q else 1024, epochs=2 if q else 30, stage1_epochs=1 if q else 8)
    return (
        f"Decoupling stage 2, {r['images']} images x {r['epochs']} epochs, fp32",
        f"{r['cached_s']:.2f} s (feature cache)",
        f"{r['uncached_s']:.2f} s (backbone every step)",
        f"{r['ratio']:.1f}x",
        f">= 20x; balanced test acc {100 * r['acc_cached']:.2f} vs {100 * r['acc_uncached']:.2f} (stage 1: 8 epochs on the same images)",
    )


def export_row(b: Bench) -> tuple:
    r = bench_export(b.data, b.device, repeats=b.repeats)
    return (
        f"Logits export, {r['images']} test images",
        f"{r['export_img_s']:.0f} img/s",
        f"{r['bare_img_s']:.0f} img/s (bare forward, {_precision(b.device)})",
        f"{r['ratio']:.2f}x",
        ">= 0.9x",
    )


def gating_row(b: Bench) -> tuple:
    r = bench_gating(b.repeats)
    return ("Gating: 100 epochs, 10,000 x 4 experts x 100 classes", f"{r['seconds']:.2f} s", "-", "-", "< 10 s")


# The selective class-count sweep: (classes, tune, test) of CIFAR-100-LT, ImageNet-LT and iNaturalist 2018
# sizes, six sources each; today's implementation (benchmarks/selective_reference.py) on one source per size.
SELECTIVE_SIZES = ((100, 5_000, 5_000), (1_000, 20_000, 20_000), (8_142, 24_000, 24_000))
SELECTIVE_SOURCES = 6


def sweep_process(classes: int, tune: int, test: int, sources: int, *flags: str) -> dict:
    """One benchmarks.selective_sweep run in its own process: seconds and peak RSS."""
    argv = ["--classes", str(classes), "--tune", str(tune), "--test", str(test), "--sources", str(sources)]
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.selective_sweep", *argv, *flags],
        check=True, capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def selective_rows(b: Bench) -> list[tuple]:
    sizes = ((100, 300, 500),) if b.quick else SELECTIVE_SIZES
    sources = 1 if b.quick else SELECTIVE_SOURCES
    rows = []
    for classes, tune, test in sizes:
        # The search as the reference has it (no coarse grid), so both compute the same rules.
        ours = [sweep_process(classes, tune, test, sources, "--today") for _ in range(b.repeats)]
        seconds = statistics.median(r["seconds"] for r in ours)
        peak = max(max(r["peak_rss_mib"], r.get("worker_peak_rss_mib", 0)) for r in ours)  # parent or a sweep process
        ref = sweep_process(classes, tune, test, 1, "--reference")
        rows.append(
            (
                f"Selective sweep: {classes:,} classes, {sources} sources x 3 methods x {len(sweep_rates())} rates, "
                f"tune {tune:,} (rejectors fit on half) / test {test:,}; the search as it was",
                f"{seconds:.1f} s ({seconds / sources:.2f} s per source), peak RSS {peak:,.0f} MiB",
                f"{ref['seconds']:.1f} s per source (one source, run once), peak RSS {ref['peak_rss_mib']:,.0f} MiB",
                f"{ref['seconds'] / (seconds / sources):.1f}x per source",
                "rules and AURCs equal within 1e-9 (tests/test_selective_speed.py)",
            )
        )
    rows.append(extras_row(b, *sizes[0], sources))
    if b.quick:
        return rows
    classes, tune, test = sizes[0]
    wide = [sweep_process(classes, tune, test, sources) for _ in range(b.repeats)]
    seconds = statistics.median(r["seconds"] for r in wide)
    rows.append(
        (
            f"Selective sweep as above, {classes:,} classes, argse's default search (coarse grid, 3 more starts)",
            f"{seconds:.1f} s ({seconds / sources:.2f} s per source)",
            "-",
            "-",
            "plug-ins within 2% of a brute-force search (docs/selective.md)",
        )
    )
    return rows


def extras_row(b: Bench, classes: int, tune: int, test: int, sources: int) -> tuple:
    """The sweep with 1,000 bootstrap resamples of test, and with the candidate rules of the guarantees, against
    the sweep alone: runs interleaved, medians of at least 5 (one each under --quick, a smoke run)."""
    times = {"plain": [], "bootstrap": [], "ladders": []}
    flags = {"plain": (), "bootstrap": ("--bootstrap", "1000"), "ladders": ("--ladders",)}
    for _ in range(b.repeats if b.quick else max(5, b.repeats)):
        for name, f in flags.items():
            times[name].append(sweep_process(classes, tune, test, sources, *f)["seconds"])
    m = {k: statistics.median(v) for k, v in times.items()}
    return (
        f"Selective sweep, {classes:,} classes, {sources} source(s): with 1,000 class-stratified bootstrap resamples "
        f"of test (evaluate.bootstrap), and with the ladders of guarantees (evaluate.ladders)",
        f"{m['bootstrap']:.2f} s with the bootstrap, {m['ladders']:.2f} s with the ladders",
        f"{m['plain']:.2f} s without either (medians of {len(times['plain'])})",
        f"{m['bootstrap'] / m['plain']:.2f}x, {m['ladders'] / m['plain']:.2f}x",
        "bootstrap at most 1.5x (issue 38)",
    )


def sweep_rates() -> list[float]:
    from argse.config.sections import EvaluateConfig
    from argse.selective.sweep import sweep_grid

    return sweep_grid(EvaluateConfig())


def demo_row(b: Bench) -> tuple:
    r = bench_demo()
    return (
        "`make demo` end to end (experts, gating, evaluation)",
        f"{r['seconds']:.0f} s",
        "-",
        "-",
        "minutes on 2 CPU cores",
    )


def rss_row(b: Bench) -> tuple:
    r = bench_cifar10_rss()
    return (
        "CIFAR-10-LT training run (1 epoch of ce: load, train, calibrate, export)",
        f"{r['seconds']:.0f} s",
        "-",
        "-",
        f"peak RSS {r['peak_rss_mib']:.0f} MiB",
    )


# name -> (row, runs under --quick); rss also needs the CIFAR-10 archive.
ROWS = {
    "train": (train_row, True),
    "threads": (threads_row, False),
    "stage2": (stage2_row, True),
    "export": (export_row, True),
    "gating": (gating_row, True),
    "selective": (selective_rows, True),
    "demo": (demo_row, False),
    "rss": (rss_row, False),
}


def gpu_lines(b: Bench) -> list[str]:
    """The GPU section: argse's loop, the PIL DataLoader reference and the bare CUDA-graph step side by side."""
    lines = ["", "## GPU", ""]
    if b.device.type != "cuda":
        return lines + ["Skipped: no CUDA device in this run (GPU figures are not measured, not estimated)."]
    from benchmarks.gpu import gpu_rows, team_rows

    rows = gpu_rows(b.data, steps=4 if b.quick else 40, repeats=b.repeats, bench=sys.modules[__name__])
    cuda_sets = [s for s in b.cfg_sets if not s.startswith("runtime.device=")] + ["runtime.device=cuda"]
    rows += team_rows([*cuda_sets, "runtime.cuda_graphs=true"], b.tmp / "team", epochs=1 if b.quick else 5)
    lines += ["| measurement | argse | baseline | speed-up | note |", "|---|---|---|---|---|"]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def report_lines(rows: list[tuple], source: str, device: torch.device, repeats: int) -> list[str]:
    gpu_note = "" if device.type == "cuda" else " No CUDA GPU in this run: the GPU rows are left empty, not estimated."
    lines = [
        f"Machine: {machine()}",
        f"Data: {source}",
        f"Medians of {repeats} runs after a warm-up; each ratio is against a baseline "
        f"measured in the same run.{gpu_note}",
        "",
        "| measurement | argse | baseline | speed-up | bar / note |",
        "|---|---|---|---|---|",
    ]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run of the benchmark code")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--only", default=",".join([*ROWS, "gpu"]), help="rows to run; 'gpu' is the GPU section")
    p.add_argument("--out", default=None, help="write the markdown table here (e.g. docs/performance.md)")
    args = p.parse_args(argv)
    only = set(args.only.split(","))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    repeats = 1 if args.quick else args.repeats
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cfg_sets, source = data_sets(Path(tmp), args.quick)
        # Only the training rows read images; the selective, gating and demo rows make their own data.
        needs_images = bool(only & {"train", "threads", "stage2", "export", "gpu"})
        data = prepare_data(load_run_config(None, cfg_sets)) if needs_images else None
        bench = Bench(data, device, cfg_sets, Path(tmp), args.quick, repeats)
        for name, (row, in_quick) in ROWS.items():
            if name in only and (in_quick or not args.quick) and (name != "rss" or ARCHIVE.is_file()):
                made = row(bench)  # one row, or a list of rows
                rows.extend(made if isinstance(made, list) else [made])
        gpu = gpu_lines(bench) if "gpu" in only else []
    write_report(report_lines(rows, source, device, repeats) + gpu, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
