"""Classification metrics per class and per named group, with the long-tail re-weighting of docs/data.md."""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING

import numpy as np
import torch

from argse.core.errors import ArgseError
from argse.data.groups import Groups, run_groups

if TYPE_CHECKING:
    from argse.config.sections import DataConfig
    from argse.data.logits import LogitsFile


def per_class_accuracy(pred: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Accuracy of each class; NaN for a class absent from ``labels``."""
    correct = torch.bincount(labels, weights=(pred == labels).double(), minlength=num_classes)
    total = torch.bincount(labels, minlength=num_classes).double()
    return correct / total


def present_mean(per_class: torch.Tensor) -> float:
    """Mean over the classes present in the split (a class with no sample has NaN accuracy)."""
    return float(per_class[~per_class.isnan()].mean())


def balanced_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean per-class accuracy of argmax predictions."""
    return present_mean(per_class_accuracy(logits.argmax(dim=1), labels, logits.shape[1]))


def group_mean(per_class: torch.Tensor, groups: Groups) -> dict[str, float]:
    """Mean of a per-class rate within each group (classes absent from the split are skipped)."""
    out = {}
    for name in groups.names:
        vals = per_class[groups.classes_in(name) & ~per_class.isnan()]
        out[name] = float(vals.mean()) if len(vals) else float("nan")
    return out


def lt_weights(labels: torch.Tensor, class_counts: torch.Tensor) -> torch.Tensor:
    """Per-sample weights pi_train(y) / pi_split(y): re-weight a split to the training label mix."""
    c = len(class_counts)
    pi_train = class_counts.double() / class_counts.sum()
    pi_split = torch.bincount(labels, minlength=c).double() / len(labels)
    w = pi_train[labels] / pi_split[labels]
    return w / w.mean()


def ece(probs: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> float:
    """Expected calibration error of the top-1 confidence, equal-width bins."""
    conf, pred = probs.max(dim=1)
    correct = (pred == labels).double()
    idx = (conf.double() * bins).long().clamp_(max=bins - 1)
    gap = (
        torch.bincount(idx, weights=correct, minlength=bins)
        - torch.bincount(idx, weights=conf.double(), minlength=bins)
    ).abs()
    return float(gap.sum() / len(labels))


def classification_report(
    logits: torch.Tensor, labels: torch.Tensor, class_counts: torch.Tensor, groups: Groups, shots: Groups
) -> dict[str, float]:
    """Overall, LT-re-weighted, balanced and per-group accuracy of argmax predictions."""
    return prediction_report(logits.argmax(dim=1), labels, class_counts, groups, shots)


def prediction_report(
    pred: torch.Tensor, labels: torch.Tensor, class_counts: torch.Tensor, groups: Groups, shots: Groups
) -> dict[str, float]:
    """:func:`classification_report` of the predicted classes ``pred`` [N] (made a block of samples at a time
    by a caller that never holds all the logits), each accuracy with its bootstrap interval (``<name>_low``,
    ``<name>_high``: :func:`accuracy_intervals`)."""
    per_class = per_class_accuracy(pred, labels, len(class_counts))
    split = torch.bincount(labels, minlength=len(class_counts)).double()
    report = accuracies(per_class.numpy()[None], split.numpy(), class_counts, groups, shots)
    out = {k: float(v[0]) for k, v in report.items()}
    return out | accuracy_intervals(per_class, split, class_counts, groups, shots)


def accuracies(per_class: np.ndarray, split: np.ndarray, class_counts: torch.Tensor, groups: Groups,
               shots: Groups) -> dict[str, np.ndarray]:  # fmt: skip
    """Every accuracy of a report from per-class accuracies [B, C] (NaN: a class absent from the split) and the
    split's class counts [C]: each is a fixed combination of them, so B resampled sets cost one pass."""
    present = split > 0
    n = split.sum()
    prior = class_counts.double().numpy() / float(class_counts.sum())
    lt = np.where(present, prior / np.where(present, split / n, 1.0), 0.0) * split  # sum of lt_weights per class
    a = np.where(present, per_class, 0.0)
    out = {"acc": a @ split / n, "acc_lt": a @ lt / lt.sum(), "balanced_acc": np.nanmean(per_class[:, present], 1)}
    for g in (groups, shots):
        for name in g.names:
            cols = g.classes_in(name).numpy() & present
            out[name] = np.nanmean(per_class[:, cols], 1) if cols.any() else np.full(len(per_class), np.nan)
    out["worst_group_acc"] = np.nanmin(np.stack([out[name] for name in groups.names]), 0)
    return out


# The bootstrap of every accuracy a report prints: resamples of the test split within each class, seeded.
ACCURACY_RESAMPLES, ACCURACY_LEVEL, ACCURACY_SEED = 1000, 0.95, 0


def accuracy_intervals(per_class: torch.Tensor, split: torch.Tensor, class_counts: torch.Tensor, groups: Groups,
                       shots: Groups) -> dict[str, float]:  # fmt: skip
    """``<name>_low`` and ``<name>_high`` of every accuracy: the 95% percentile interval over 1,000 resamples of
    the split that draw, within each class, as many samples as it has. The number right among a class's draws
    is then Binomial(n_c, accuracy_c), so a resample is drawn class by class without touching the samples."""
    rng = np.random.default_rng([ACCURACY_SEED, 0xACC])
    n_c, a_c = split.numpy(), np.nan_to_num(per_class.numpy())
    draws = rng.binomial(n_c.astype(np.int64), a_c, size=(ACCURACY_RESAMPLES, len(n_c))) / np.maximum(n_c, 1)
    draws[:, n_c == 0] = np.nan
    with warnings.catch_warnings():  # a group without classes in the split: its mean is NaN, as in the report
        warnings.simplefilter("ignore", RuntimeWarning)
        resampled = accuracies(draws, n_c, class_counts, groups, shots)
    out = {}
    for name, values in resampled.items():
        lo, hi = (
            np.quantile(values, [(1 - ACCURACY_LEVEL) / 2, (1 + ACCURACY_LEVEL) / 2])
            if not np.isnan(values).any()
            else (math.nan, math.nan)
        )
        out |= {f"{name}_low": float(lo), f"{name}_high": float(hi)}
    return out


def paired_accuracy_draws(a: LogitsFile, b: LogitsFile, data: DataConfig, salt: int = 0) -> dict[str, np.ndarray]:
    """Resamples of every accuracy of ``a`` minus ``b`` (two sources' logits of the same test samples), drawn as
    :func:`accuracy_intervals` draws: within each class as many samples as it has, both sources on the same draws.
    Per class the draws fall into (only a right, only b right, neither or both) in the class's proportions, so a
    resample is Multinomial(n_c, those proportions). ``worst_group_acc`` (a minimum, not a mean) is left out.
    ``salt`` (a seed run's index) makes the draws of several runs independent."""
    if not torch.equal(a.labels, b.labels) or not torch.equal(a.indices, b.indices):
        raise ArgseError(f"{a.path} and {b.path} hold other samples; compare sources of the same run's test split")
    counts = torch.tensor(a.class_counts)
    right_a, right_b = a.logits.argmax(1) == a.labels, b.logits.argmax(1) == b.labels
    k = len(counts)
    n_c = torch.bincount(a.labels, minlength=k).numpy()
    only_a = torch.bincount(a.labels, weights=(right_a & ~right_b).double(), minlength=k).numpy()
    only_b = torch.bincount(a.labels, weights=(right_b & ~right_a).double(), minlength=k).numpy()
    rng = np.random.default_rng([ACCURACY_SEED, 0xD1FF, salt])
    p = np.stack([only_a, only_b, n_c - only_a - only_b], 1) / np.maximum(n_c, 1)[:, None]
    p[n_c == 0] = [0.0, 0.0, 1.0]
    draws = np.stack([rng.multinomial(n, q, size=ACCURACY_RESAMPLES) for n, q in zip(n_c, p, strict=True)], 1)
    per_class = (draws[..., 0] - draws[..., 1]) / np.maximum(n_c, 1)
    per_class[:, n_c == 0] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out = accuracies(per_class, n_c, counts, *run_groups(counts, data))
    out.pop("worst_group_acc")
    return out


def source_report(f: LogitsFile, data: DataConfig) -> dict[str, float]:
    """Classification metrics of one logits file under the run's groups, plus its ECE before and after
    temperature scaling and the temperature itself."""
    counts = torch.tensor(f.class_counts)
    report = classification_report(f.logits, f.labels, counts, *run_groups(counts, data))
    report["ece_raw"] = ece(torch.softmax(f.logits.double(), 1), f.labels)
    report["ece_cal"] = ece(f.probs, f.labels)
    report["temperature"] = f.temperature
    return report


def source_reports(files: list[LogitsFile], data: DataConfig) -> dict[str, dict[str, float]]:
    """``source_report`` of each source's logits file, by source name."""
    return {f.expert: source_report(f, data) for f in files}
