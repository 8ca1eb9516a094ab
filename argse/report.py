"""The evaluation report, ``argse.report/1``: settings, samples, and every curve with its AURCs and how many of
its points have a group that accepts nothing (``empty_group_points``; added fields leave the format tag)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from argse import filesets, storage
from argse.config import RunConfig
from argse.evaluation import Evaluation, empty_group_points, fit_options
from argse.paths import RunPaths
from argse.records import Record, list_of, mapping, read_record, string

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
        "config": asdict(ecfg),
        "test_prior": ecfg.test_prior,
        "protocol": ecfg.protocol,
        "fit_options": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(fit_options(ecfg)).items()},
        "samples": ev.samples,
        "tail_max_count": cfg.data.tail_max_count,
        "seconds": ev.seconds,
        "aurc_definition": AURC_DEFINITION,
        "results": [
            {
                "source": s,
                "method": m,
                "aurc": ev.aurcs[(s, m)],
                "curve": ev.curves[(s, m)],
                # points where a group accepts nothing (each marked by its row's empty_groups): their group error is
                # the convention 1, included in the AURCs and drawn marked in rc_curves.png
                "empty_group_points": empty_group_points(ev.curves[(s, m)]),
            }
            for s, m in ev.curves
        ],
    }


def write_report(cfg: RunConfig, ev: Evaluation) -> Path:
    return storage.write_json(cfg.paths.report, report_record(cfg, ev))


def read_report(paths: RunPaths) -> Record:
    """report.json with its settings and results checked to be there (a reader takes further fields by ``get``)."""
    rec = read_record(paths.report, FORMAT, "the evaluation report", "rerun python -m argse.evaluate")
    # the file must be the one its evaluation committed (not half of a killed one); what it was made from is
    # the caller's to judge (a partial evaluation keeps what is still current, argse.evaluation_merge)
    filesets.open_set(paths.evaluation, [paths.report.name], "the evaluation report", paths.out, lineage=False)
    rec.get("test_prior", string(("train", "balanced")))
    rec.get("protocol", string(("argse", "paper")))
    rec.get("results", list_of(mapping()))
    return rec
