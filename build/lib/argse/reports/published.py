"""Published figures the results pages are held against, each with where it was read and its recipe.

Only numbers read in the cited table or file are listed; accuracy is 100 - the top-1 error
where the source reports error. The figures are the Bag of Tricks benchmark's (which reruns each
method with Cao et al.'s recipe, argse's CE recipe) and the logit-adjustment authors' own code
README (their recipe, far longer than 200 epochs).
"""

from __future__ import annotations

from dataclasses import dataclass

BOT = "Zhang et al. 2021 (Bag of Tricks, AAAI), zhangyongshun/BagofTricks-LT documents/trick_gallery.md"
BOT_RECIPE = (
    "ResNet-32, 200 epochs, batch 128, SGD lr 0.1 momentum 0.9, wd 2e-4, 5 warm-up epochs, lr /100 at 160 and 180 "
    "(configs/cui_cifar/baseline) - Cao et al.'s recipe; best checkpoint"
)
MENON = "Menon et al. 2021 code, google-research logit_adjustment/README.md, Results (example run)"
MENON_RECIPE = (
    "their ResNet-32 (bottleneck), SGD Nesterov lr 0.1, batch 128, L2 1e-4, 1241 (C10) / 1419 (C100) epochs, "
    "tau = 1; final epoch"
)


@dataclass(frozen=True)
class Figure:
    dataset: str
    method: str
    balanced_acc: float
    where: str
    recipe: str


FIGURES = [
    Figure("CIFAR-10-LT", "CE", 69.88, f"{BOT}, Re-weighting table, Baseline (error 30.12)", BOT_RECIPE),
    Figure(
        "CIFAR-10-LT",
        "Balanced Softmax",
        76.37,
        f"{BOT}, Re-weighting table, BalancedSoftmaxCE (error 23.63)",
        BOT_RECIPE,
    ),
    Figure("CIFAR-10-LT", "decoupling tau-norm", 70.66, f"{BOT}, Classifier-balancing table (error 29.34)", BOT_RECIPE),
    Figure(
        "CIFAR-10-LT", "CE then class-balanced sampling (DRS)", 72.92, f"{BOT}, DRS table (error 27.08)", BOT_RECIPE
    ),
    Figure("CIFAR-10-LT", "CE (ERM)", 71.36, MENON, MENON_RECIPE),
    Figure("CIFAR-10-LT", "post-hoc logit adjustment", 77.32, MENON, MENON_RECIPE),
    Figure("CIFAR-10-LT", "logit-adjusted loss", 77.89, MENON, MENON_RECIPE),
    Figure("CIFAR-100-LT", "CE", 38.24, f"{BOT}, Re-weighting table, Baseline (error 61.76)", BOT_RECIPE),
    Figure(
        "CIFAR-100-LT",
        "Balanced Softmax",
        43.18,
        f"{BOT}, Re-weighting table, BalancedSoftmaxCE (error 56.82)",
        BOT_RECIPE,
    ),
    Figure(
        "CIFAR-100-LT", "decoupling tau-norm", 41.62, f"{BOT}, Classifier-balancing table (error 58.38)", BOT_RECIPE
    ),
    Figure(
        "CIFAR-100-LT", "CE then class-balanced sampling (DRS)", 41.34, f"{BOT}, DRS table (error 58.66)", BOT_RECIPE
    ),
    Figure("CIFAR-100-LT", "CE (ERM)", 39.87, MENON, MENON_RECIPE),
    Figure("CIFAR-100-LT", "post-hoc logit adjustment", 44.07, MENON, MENON_RECIPE),
    Figure("CIFAR-100-LT", "logit-adjusted loss", 44.06, MENON, MENON_RECIPE),
]
"""Balanced test accuracy (%), imbalance factor 100. Neither source reports cRT or LWS on CIFAR-LT
(Bag of Tricks leaves those cells empty; Kang et al. report ImageNet-LT, iNaturalist and Places)."""


AURC = """\
| figure | value | source | recipe |
|---|---|---|---|
| CIFAR-100-LT (IF 100) AURC, balanced / worst-group error: Chow | 0.509 ± 0.002 / 0.883 ± 0.007 | Narasimhan et al. 2024, Table 2 | CE ResNet-32, 256 epochs, lr 0.4, batch 128; test prior = training prior; 5 trials |
| same, Plug-in [Balanced] | 0.292 ± 0.006 / 0.416 ± 0.015 | Table 2 | same |
| same, Plug-in [Worst] | 0.287 ± 0.008 / 0.321 ± 0.018 | Table 2 | same |
"""
"""Selective prediction (Narasimhan et al., ICLR 2024). The paper reports no CIFAR-10-LT figures;
what carries over is the ordering under the training prior: both plug-ins well below Chow."""


def markdown() -> str:
    """The published-figures section of a results page."""
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
    lines = ["| dataset (IF 100) | method | balanced acc. % | where read | recipe |", "|---|---|---|---|---|"]
    lines += [f"| {f.dataset} | {f.method} | {f.balanced_acc:.2f} | {f.where} | {f.recipe} |" for f in rows]
    return "\n".join(lines) + "\n"
