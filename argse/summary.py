"""Summary tables of exported logits: accuracy per group and calibration, one row per source."""

from __future__ import annotations

import torch
from rich.table import Table

from argse.data import head_tail_groups, shot_groups
from argse.logits import LogitsFile
from argse.metrics import classification_report, ece

COLUMNS = ["acc", "acc_lt", "balanced_acc", "head", "tail", "many", "medium", "few"]


def source_report(f: LogitsFile, tail_max_count: int, many_min_count: int, few_max_count: int) -> dict[str, float]:
    """Classification metrics of one logits file, plus ECE before and after temperature scaling."""
    counts = torch.tensor(f.class_counts)
    report = classification_report(
        f.logits,
        f.labels,
        counts,
        head_tail_groups(counts, tail_max_count),
        shot_groups(counts, many_min_count, few_max_count),
    )
    report["ece_raw"] = ece(torch.softmax(f.logits.double(), 1), f.labels)
    report["ece_cal"] = ece(f.probs, f.labels)
    report["temperature"] = f.temperature
    return report


def reports_table(
    title: str, reports: dict[str, dict[str, float]], columns: list[str] = COLUMNS + ["ece_raw", "ece_cal"]
) -> Table:
    table = Table(title=title)
    table.add_column("source")
    for c in columns:
        table.add_column(c, justify="right")
    for name, rep in reports.items():
        table.add_row(name, *(f"{100 * rep[c]:.2f}" if c in rep else "-" for c in columns))
    return table


def markdown_table(reports: dict[str, dict[str, float]], columns: list[str]) -> str:
    lines = ["| source | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, rep in reports.items():
        lines.append(f"| {name} | " + " | ".join(f"{100 * rep[c]:.2f}" for c in columns) + " |")
    return "\n".join(lines) + "\n"
