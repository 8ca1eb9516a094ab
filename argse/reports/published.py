"""Published figures the results pages are held against, each with where it was read and its recipe.

Only numbers read in the cited table or file are listed (balanced top-1 accuracy, %; 100 - the error
where the source reports error), for CIFAR-10-LT and CIFAR-100-LT at imbalance factor 100 with a
ResNet-32. Each figure names the argse expert it is held against (``decoupling:<classifier>`` for a
variant of decoupling's stage 2). Read on 2026-12-06; docs/results/cifar10_lt.md explains the gaps.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Source:
    cite: str
    recipe: str


BOT = Source(
    "Zhang et al. 2021 (Bag of Tricks, AAAI): zhangyongshun/BagofTricks-LT `documents/trick_gallery.md` at 66c2087 "
    "(its CIFAR rows since 2021-11-15, on Cao et al.'s split, `configs/cao_cifar`)",
    "ResNet-32, 200 epochs, batch 128, SGD lr 0.1 momentum 0.9, wd 2e-4, 5 warm-up epochs, lr x0.01 at 160 and 180 "
    "(Cao et al.'s recipe, argse's `ce`); `main/train.py` keeps the epoch best on the test split. cRT and LWS: "
    "30 more epochs from the last stage-1 epoch, lr 0.1, wd 5e-4, x0.1 at 10 and 20, class-balanced sampling; "
    "tau-norm: tau 1 on the best stage-1 model",
)
BOT_README = Source(
    "Zhang et al. 2021: zhangyongshun/BagofTricks-LT `README.md` at ce7859a, baseline table, 'Baselines using our "
    "codes' (the gallery's Baseline row is the table's 'Reference [Cui, Kang, Liu]' figure)",
    BOT.recipe,
)
MENON = Source(
    "Menon et al. 2021 (ICLR): arXiv 2007.07314v2, Table 3 (test balanced error, mean of 5 trials)",
    "ResNet-32, 200 epochs, SGD momentum 0.9 lr 0.1, batch 128, wd 1e-4, 5 warm-up epochs, lr x0.1 at 160 and 180 "
    "(App. D)",
)
MENON_CODE = Source(
    "Menon et al.'s code: google-research `logit_adjustment/README.md` at 21efedb, 'Example (balanced) test "
    "accuracies'",
    "ResNet-32, SGD Nesterov lr 0.1, batch 128, L2 1e-4, 1241 (CIFAR-10) / 1419 (CIFAR-100) epochs with a 20- / "
    "22-epoch warm-up (`logit_adjustment/utils.py`); the final epoch",
)
REN = Source(
    "Ren et al. 2020 (NeurIPS, BALMS): arXiv 2007.10740v3, Table 5 row (3) (mean ± s.e. over 3 runs)",
    "ResNet-32, SGD Nesterov 0.9, wd 5e-4, batch 512, 13K iterations (about 540 epochs of CIFAR-10-LT), lr 0.05 to "
    "0.1 over 800 iterations then cosine to 0 (App. C.3)",
)


@dataclass(frozen=True)
class Figure:
    dataset: str
    expert: str  # the argse expert (decoupling:<classifier> for a stage-2 variant) it is held against
    method: str  # as the source names it
    balanced_acc: float
    read: str  # the cell as read: "error 29.64" or "accuracy 71.36"
    source: Source


def accuracy_of(read: str) -> float:
    """The balanced accuracy (%) a cell as read gives: 'error 29.64' -> 70.36, 'accuracy 0.7136' or
    'accuracy 83.1 ± 0.4' -> the accuracy in %."""
    kind, value = read.split(" ", 1)
    number = float(value.split(" ")[0])
    return round(100 - number, 2) if kind == "error" else round(100 * number if number < 1 else number, 2)


# One row per published method, as the sources' tables have them: (argse expert, method, source, the CIFAR-10-LT
# cell as read, the CIFAR-100-LT cell as read).
ROWS = [
    ("ce", "Baseline (CE)", BOT, "error 29.64", "error 61.68"),
    ("ce", "Baselines using our codes (CE)", BOT_README, "error 28.05", "error 62.27"),
    ("ce", "ERM", MENON, "error 27.16", "error 61.64"),
    ("ce", "Baseline (ERM)", MENON_CODE, "accuracy 0.7136", "accuracy 0.3987"),
    ("logit_adjust", "Logit adjustment loss (tau = 1)", MENON, "error 22.33", "error 56.11"),
    ("logit_adjust", "LA loss", MENON_CODE, "accuracy 0.7789", "accuracy 0.4406"),
    ("posthoc_adjust", "Logit adjustment post-hoc (tau = 1)", MENON, "error 22.60", "error 58.24"),
    ("posthoc_adjust", "Logit adjustment post-hoc (tau = tau*)", MENON, "error 19.08", "error 57.90"),
    ("posthoc_adjust", "Post-hoc LA", MENON_CODE, "accuracy 0.7732", "accuracy 0.4407"),
    ("balanced_softmax", "BalancedSoftmaxCE", BOT, "error 22.46", "error 57.01"),
    ("balanced_softmax", "Balanced Softmax", REN, "accuracy 83.1 ± 0.4", "accuracy 50.3 ± 0.3"),
    ("decoupling:crt", "cRT", BOT, "error 25.01", "error 59.74"),
    ("decoupling:lws", "LWS", BOT, "error 27.37", "error 59.84"),
    ("decoupling:tau_norm", "Tau_normalization", BOT, "error 27.30", "error 59.04"),
]
DATASETS = ("CIFAR-10-LT", "CIFAR-100-LT")  # the order of ROWS' cells
FIGURES = [
    Figure(dataset, expert, method, accuracy_of(cells[i]), cells[i], source)
    for i, dataset in enumerate(DATASETS)
    for expert, method, source, *cells in ROWS
]
"""Balanced test accuracy (%), imbalance factor 100, ResNet-32. Kang et al. (2020) report no CIFAR; their
variants' CIFAR figures are Bag of Tricks' runs."""


AURC = """\
| figure | value | source | recipe |
|---|---|---|---|
| CIFAR-100-LT (IF 100) AURC, balanced / worst-group error: Chow | 0.509 ± 0.002 / 0.883 ± 0.007 | Narasimhan et al. 2024, Table 2 | CE ResNet-32, 256 epochs, lr 0.4, batch 128; test prior = training prior; 5 trials |
| same, Plug-in [Balanced] | 0.292 ± 0.006 / 0.416 ± 0.015 | Table 2 | same |
| same, Plug-in [Worst] | 0.287 ± 0.008 / 0.321 ± 0.018 | Table 2 | same |
"""
"""Selective prediction (Narasimhan et al., ICLR 2024). The paper reports no CIFAR-10-LT figures;
what carries over is the ordering under the training prior: both plug-ins well below Chow."""


CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def dataset_of(dataset: str, classes: list[str], imbalance_factor: float, arch: str, depth: int) -> str | None:
    """The published dataset a run is held against, at IF 100 with a CIFAR ResNet-32: CIFAR-10-LT when its classes
    are CIFAR-10's (the torchvision files or an image tree of them, as the JPEG archive), CIFAR-100-LT for
    ``cifar100_lt``; None otherwise."""
    if imbalance_factor != 100 or arch != "resnet_cifar" or depth != 32:
        return None
    if classes == CIFAR10_CLASSES:
        return "CIFAR-10-LT"
    return "CIFAR-100-LT" if dataset == "cifar100_lt" else None


def sources_markdown(figures: list[Figure]) -> tuple[dict[Source, int], str]:
    """Each source once, numbered in order of first use, with its recipe."""
    numbers: dict[Source, int] = {}
    for f in figures:
        numbers.setdefault(f.source, len(numbers) + 1)
    lines = [f"[{n}] {s.cite}. Recipe: {s.recipe}." for s, n in numbers.items()]
    return numbers, "\n".join(f"- {line}" for line in lines) + "\n"


def comparison_markdown(dataset: str, argse: dict[str, tuple[float, str]]) -> str:
    """Every argse expert beside the published figures of its method. ``argse`` maps an expert (as in
    ``Figure.expert``) to its balanced test accuracy (%) and that figure as the page prints it (with its
    interval or spread)."""
    rows = [f for f in FIGURES if f.dataset == dataset and f.expert in argse]
    numbers, sources = sources_markdown(rows)
    lines = [
        "| argse expert | argse | published method | published | argse - published | source |",
        "|---|---|---|---|---|---|",
    ]
    for f in rows:
        acc, cell = argse[f.expert]
        lines.append(
            f"| {f.expert} | {cell} | {f.method} | {f.balanced_acc:.2f} | {acc - f.balanced_acc:+.2f} | "
            f"[{numbers[f.source]}] {f.read} |"
        )
    return "\n".join(lines) + "\n\n" + sources


def markdown() -> str:
    """The published-figures section of a results page that is not one of the published datasets' runs."""
    return (
        "## Published figures to hold these against\n\n"
        "Balanced test accuracy, ResNet-32, imbalance factor 100; each figure with where it was read and the "
        "recipe behind it (argse's recipes: `experts/*.yaml`).\n\n"
        + accuracy_markdown()
        + "\nSelective prediction (CIFAR-100-LT only; the paper reports no CIFAR-10-LT figures: what should "
        "carry over is the ordering under the training prior, both plug-ins well below Chow, Plug-in [Worst] "
        "lowest on worst-group error):\n\n" + AURC
    )


def accuracy_markdown(dataset: str | None = None) -> str:
    """The figures (of one dataset, or all) as a markdown table."""
    rows = [f for f in FIGURES if dataset is None or f.dataset == dataset]
    numbers, sources = sources_markdown(rows)
    lines = ["| dataset (IF 100) | argse expert | method | balanced acc. % | as read |", "|---|---|---|---|---|"]
    lines += [
        f"| {f.dataset} | {f.expert} | {f.method} | {f.balanced_acc:.2f} | [{numbers[f.source]}] {f.read} |"
        for f in rows
    ]
    return "\n".join(lines) + "\n\n" + sources
