"""The figures of every curve with their bootstrap intervals, paired differences between curves, and the draws
behind them: a table for the console and summary.md, figures.csv, and bootstrap.safetensors (argse.bootstrap/1:
one float32 vector of draws per source, method, reduction and figure, so any two rows measured on the same test
set can be compared later with :func:`paired`)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import torch

from argse.core import storage
from argse.core.errors import ArgseError
from argse.selective.curve_metrics import FULL_AURC, REDUCTIONS, Targets, interval
from argse.selective.sweep import Evaluation

DRAWS_FILE = "bootstrap.safetensors"
FIGURES_FILE = "figures.csv"
DRAWS_FORMAT = "argse.bootstrap/1"
SHORT = {"balanced_error": "balanced", "worst_group_error": "worst"}


def cell(value: float, bounds: list[float] | None) -> str:
    """'0.1234 [0.1100, 0.1350]', or the value alone without an interval."""
    return f"{value:.4f}" if not bounds else f"{value:.4f} [{bounds[0]:.4f}, {bounds[1]:.4f}]"


def figures_rows(ev: Evaluation) -> list[tuple[str, str, str, str, float, list[float] | None]]:
    """(source, method, reduction, figure, value, interval) for every figure of every curve."""
    rows = []
    for (s, m), per in ev.figures.items():
        for reduction, figs in per.items():
            for name, value in figs.items():
                rows.append((s, m, reduction, name, value, ev.intervals.get((s, m), {}).get(reduction, {}).get(name)))
    return rows


def figures_markdown(ev: Evaluation, targets: Targets, level: float, resamples: int) -> str:
    """One row per (source, method), one column per reduction and figure, each with its interval."""
    names = [n for n in targets.names() if n != FULL_AURC]  # the AURC table has it
    head = [f"{n} ({SHORT[r]})" for r in REDUCTIONS for n in names]
    lines = ["| source | method | " + " | ".join(head) + " |", "|---|---|" + "---|" * len(head)]
    for (s, m), per in ev.figures.items():
        bounds = ev.intervals.get((s, m), {})
        cells = [cell(per[r][n], bounds.get(r, {}).get(n)) for r in REDUCTIONS for n in names]
        lines.append(f"| {s} | {m} | " + " | ".join(cells) + " |")
    how = (f"[{100 * level:g}% interval over {resamples} class-stratified bootstrap resamples of test]"
           if resamples else "(no bootstrap: evaluate.bootstrap=0)")  # fmt: skip
    return f"Each cell: value {how}.\n\n" + "\n".join(lines) + "\n"


def paired(draws_a: np.ndarray, draws_b: np.ndarray, level: float) -> tuple[float, float]:
    """The interval of a - b from draws on the same resamples of the same test set."""
    if draws_a.shape != draws_b.shape:
        raise ArgseError(
            f"the two rows have {len(draws_a)} and {len(draws_b)} bootstrap draws, so they were not resampled "
            f"together; evaluate them in one evaluation, or with the same evaluate.bootstrap and seed"
        )
    return interval(draws_a - draws_b, level)


def paired_markdown(ev: Evaluation, level: float, figure: str = "aurc", baseline: str = "chow") -> str:
    """Each rejector against ``baseline`` on the same source: the difference of ``figure`` with its paired
    interval; '' without draws. An interval that excludes 0 is marked *."""
    lines = []
    for (s, m), per in ev.draws.items():
        if m == baseline or (s, baseline) not in ev.draws or not per:
            continue
        cells = []
        for r in REDUCTIONS:
            d = ev.figures[(s, m)][r][figure] - ev.figures[(s, baseline)][r][figure]
            lo, hi = paired(per[r][figure], ev.draws[(s, baseline)][r][figure], level)
            cells.append(f"{d:+.4f} [{lo:+.4f}, {hi:+.4f}]" + ("*" if lo > 0 or hi < 0 else ""))
        lines.append(f"| {s} | {m} − {baseline} | " + " | ".join(cells) + " |")
    if not lines:
        return ""
    head = f"| source | difference | {figure} (balanced) | {figure} (worst) |\n|---|---|---|---|\n"
    note = (f"Paired differences on the same resamples ({100 * level:g}% interval; * where it excludes 0: the "
            f"difference is larger than the resampling noise of test).\n\n")  # fmt: skip
    return note + head + "\n".join(lines) + "\n"


def figures_csv(ev: Evaluation) -> str:
    """figures.csv: one row per source, method, reduction and figure, with its interval (empty without draws)."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["source", "method", "reduction", "figure", "value", "low", "high"])
    for s, m, r, n, value, bounds in figures_rows(ev):
        lo, hi = bounds or ("", "")
        writer.writerow([s, m, r, n, round(value, 9), *(round(x, 9) if x != "" else x for x in (lo, hi))])
    return buf.getvalue()


def write_draws(folder: Path, ev: Evaluation, resamples: int, seed: int) -> Path | None:
    """bootstrap.safetensors, or nothing without resamples."""
    tensors = {
        f"{s}|{m}|{r}|{n}": torch.from_numpy(np.asarray(d, np.float32))
        for (s, m), per in ev.draws.items() for r, figs in per.items() for n, d in figs.items()
    }  # fmt: skip
    if not tensors:
        return None
    meta = {"format": DRAWS_FORMAT, "resamples": str(resamples), "seed": str(seed), "strata": "class"}
    return storage.save_tensors(folder / DRAWS_FILE, tensors, meta)


def read_draws(path: Path) -> dict[tuple[str, str, str, str], np.ndarray]:
    """bootstrap.safetensors back as {(source, method, reduction, figure): draws}."""
    tensors, meta = storage.load_tensors(path, "the bootstrap draws")
    if meta.get("format") != DRAWS_FORMAT:
        raise ArgseError(f"{path} is not an {DRAWS_FORMAT} file; rerun python -m argse.evaluate")
    return {tuple(k.split("|")): v.numpy() for k, v in tensors.items()}


def guarantees_markdown(ev: Evaluation) -> str:
    """One row per rejector and configured guarantee: met on the fitting sample, its bound, and on test the risk
    it reaches and its coverage; '' when none was configured."""
    lines = []
    for (s, m), rows in ev.guaranteed.items():
        for g in rows:
            risk = ", ".join(f"{r:g}" for r in g["risk"])
            what = f"{g['risk_of']} ≤ {risk}, δ = {g['delta']:g}"
            if not g["met"]:
                reach = (f"the smallest it guarantees at this δ: {g['closest'] * g['risk'][0]:.4f}" if len(g["risk"]) == 1
                         else f"its closest rule: {g['closest']:.2f}× each group's risk")  # fmt: skip
                lines.append(f"| {s} | {m} | {what} | no ({reach}) | | | |")
                continue
            nums = lambda xs: ", ".join(f"{x:.4f}" for x in xs)  # noqa: E731
            lines.append(f"| {s} | {m} | {what} | yes | {nums(g['bound'])} | {nums(g['test_risk'])}"
                         f"{'' if g['within'] else ' (above)'} | {g['test_coverage']:.4f} |")  # fmt: skip
    if not lines:
        return ""
    head = "| source | method | guarantee | met on tune | bound | test risk | test coverage |\n|---|---|---|---|---|---|---|\n"
    note = ("Abstention with a guarantee (docs/selective.md, \"Guarantees\"): the rule of largest coverage whose risk "
            "is at most the target with probability 1 - δ over the rejector part of `tune` (Learn then Test, "
            "fixed-sequence, Hoeffding bounds), and what it reaches on `test`.\n\n")  # fmt: skip
    return note + head + "\n".join(lines) + "\n"


def seeds_figures_markdown(reports: list, level: float) -> str:
    """The figures of every curve in the seeds' report.json (report_file.ReportFile): with one seed, each with its
    bootstrap interval; with several, mean ± standard error over the seeds. '' when the reports have none."""
    from argse.reports.plots import standard_error

    rows = [{(r.source, r.method): r for r in rep.results} for rep in reports]
    first = next((r for r in reports[0].results if r.figures), None)
    if first is None:
        return ""
    names = [(red, n) for red in REDUCTIONS for n in first.figures.get(red, {}) if n != FULL_AURC]
    head = [f"{n} ({SHORT[red]})" for red, n in names]
    lines = ["| source | method | " + " | ".join(head) + " |", "|---|---|" + "---|" * len(head)]
    for key, row in rows[0].items():
        if not row.figures:
            continue
        if len(reports) == 1:
            cells = [cell(row.figures[red][n], row.intervals.get(red, {}).get(n)) for red, n in names]
        else:
            per_seed = [[seed[key].figures[red][n] for seed in rows] for red, n in names]
            cells = [f"{sum(v) / len(v):.4f} ± {standard_error(v):.4f}" for v in per_seed]
        lines.append(f"| {key[0]} | {key[1]} | " + " | ".join(cells) + " |")
    how = (f"value [{100 * level:g}% bootstrap interval over test]" if len(reports) == 1
           else "mean ± standard error over seeds (each seed's bootstrap intervals are in its summary.md)")  # fmt: skip
    return f'Each cell: {how}; definitions in docs/selective.md, "Beyond AURC".\n\n' + "\n".join(lines) + "\n"
