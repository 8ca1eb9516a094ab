"""The evaluation report, ``argse.report/1``: settings, samples, and every curve with its AURCs and how many of
its points have a group that accepts nothing (``empty_group_points``; added fields leave the format tag)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Literal

from argse.config.sections import RunConfig
from argse.core import storage
from argse.core.records import Finite, Record, read_model
from argse.selective.sweep import Evaluation, empty_group_points, fit_options

FILE = "report.json"

FORMAT = "argse.report/1"
AURC_DEFINITION = (
    "mean error over the rejection-rate range: trapezoid rule over the target rejection "
    "rates, divided by the range width; held constant past the last rate (0.95); a group that accepts nothing "
    "counts as error 1 (see empty_group_points); the keys ending @reached integrate over the rejection rates "
    "reached on test instead"
)


def report_record(cfg: RunConfig, ev: Evaluation) -> dict:
    """report.json's content."""
    ecfg = cfg.evaluate
    return {
        "format": FORMAT,
        "config": ecfg.model_dump(),
        "test_prior": ecfg.test_prior,
        "protocol": ecfg.protocol,
        "fit_options": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(fit_options(ecfg)).items()},
        "samples": ev.samples,
        "tail_max_count": cfg.data.tail_max_count,
        "seconds": ev.seconds,
        "aurc_definition": AURC_DEFINITION,
        "bootstrap": {
            "resamples": ecfg.bootstrap,
            "seed": ecfg.seed,
            "level": ecfg.confidence,
            "strata": "class: each resample draws every class's test samples with replacement, as many as it has",
        },  # fmt: skip
        "results": [
            {
                "source": s,
                "method": m,
                "aurc": ev.aurcs[(s, m)],
                "curve": ev.curves[(s, m)],
                # points where a group accepts nothing (each marked by its row's empty_groups): their group error is
                # the convention 1, included in the AURCs and drawn marked in rc_curves.png
                "empty_group_points": empty_group_points(ev.curves[(s, m)]),
                # curve_metrics' figures {reduction: {figure: value}} and their bootstrap intervals (empty without)
                "figures": ev.figures.get((s, m), {}),
                "intervals": ev.intervals.get((s, m), {}),
                # each configured guarantee: met on the fitting sample or not, its bound, what it reaches on test
                "guarantees": ev.guaranteed.get((s, m), []),
            }
            for s, m in ev.curves
        ],
    }


def write_report(folder: Path, cfg: RunConfig, ev: Evaluation) -> Path:
    return storage.write_json(folder / FILE, report_record(cfg, ev))


class ReportRow(Record):
    source: str
    method: str
    aurc: dict[str, Finite]
    curve: list[dict]
    figures: dict[str, dict[str, Finite]] = {}  # reports before argse computed them have none
    intervals: dict[str, dict[str, list[Finite]]] = {}


class ReportFile(Record):
    """report.json: the settings, samples and every curve with its AURCs (further fields kept as written)."""

    format: Literal["argse.report/1"]
    test_prior: Literal["train", "balanced"]
    protocol: Literal["argse", "paper"]
    results: list[ReportRow]


def read_report(folder: Path) -> ReportFile:
    """report.json of an evaluation's folder, checked (ReportFile)."""
    return read_model(folder / FILE, ReportFile, "the evaluation report", "rerun python -m argse.evaluate")
