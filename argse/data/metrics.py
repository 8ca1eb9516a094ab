"""Classification metrics per class and per named group, with the long-tail re-weighting of docs/data.md."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

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
    by a caller that never holds all the logits)."""
    correct = (pred == labels).double()
    per_class = per_class_accuracy(pred, labels, len(class_counts))
    report = {
        "acc": float(correct.mean()),
        "acc_lt": float((correct * lt_weights(labels, class_counts)).mean()),
        "balanced_acc": present_mean(per_class),
    }
    report |= group_mean(per_class, groups) | group_mean(per_class, shots)
    report["worst_group_acc"] = min(report[name] for name in groups.names if not math.isnan(report[name]))
    return report


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
