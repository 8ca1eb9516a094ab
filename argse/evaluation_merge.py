"""A partial evaluation (``evaluate --sources X``) folded into the earlier one: X's results replace X's,
the other sources' results are kept, so report.json and rules.json go on describing every source.

Earlier results are kept only when they were made under the same settings as the new ones (prior,
protocol, fitting options, rate grid, groups, and the same rejector part of ``tune``) and from the
logits that are there now; otherwise they are dropped, and :meth:`Merge.line` says which and why.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace

from argse import filesets
from argse.config import RunConfig
from argse.errors import ArgseError
from argse.evaluation import Evaluation
from argse.logits import set_folder
from argse.records import Record, integer, list_of, mapping, number, read_record, string
from argse.report import read_report, report_record
from argse.rules import FIX as RULES_FIX
from argse.rules import FORMAT as RULES_FORMAT

# report.json's fields that a result depends on, beyond the groups (rules.json) and the rejector part.
SETTINGS = ("test_prior", "protocol", "fit_options", "tail_max_count")


@dataclass
class Merge:
    """The evaluation to write, and which sources' earlier results it kept or dropped."""

    evaluation: Evaluation
    kept: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    reason: str = ""

    def line(self) -> str | None:
        """One console line on what happened to the earlier results (None: there were none to keep)."""
        if self.dropped:
            return (f"dropped: the earlier results of {', '.join(self.dropped)} ({self.reason}); evaluate them "
                    f"again under these settings with --sources {','.join(self.dropped)}")  # fmt: skip
        if self.reason:
            return f"dropped: every earlier result ({self.reason})"
        if self.kept:
            return f"kept: the earlier results of {', '.join(self.kept)} (same settings)"
        return None


def merge_previous(cfg: RunConfig, ev: Evaluation) -> Merge:
    """``ev`` with the results of every source it did not evaluate taken from the run's report.json."""
    if not cfg.paths.report.is_file():
        return Merge(ev)
    evaluated = set(_sources(ev.curves))
    try:
        rec = read_report(cfg.paths)
        earlier = _results(rec)
        others = [s for s in _sources(earlier) if s not in evaluated]
        reason = _differs(cfg, ev, rec)
    except ArgseError as exc:  # an unreadable or older report: nothing in it can be kept
        return Merge(ev, reason=str(exc))
    if reason:
        return Merge(ev, dropped=others, reason=reason) if others else Merge(ev)
    stale = _made_again(cfg, others)
    if stale:
        return Merge(_fold(ev, earlier, stale), [s for s in others if s not in stale], stale,
                     "made again since that evaluation")  # fmt: skip
    return Merge(_fold(ev, earlier, []), others)


def _sources(results: dict) -> list[str]:
    return list(dict.fromkeys(s for s, _ in results))


def _results(rec: Record) -> dict[tuple[str, str], tuple[list[dict], dict]]:
    """(source, method) -> (curve, AURCs) of report.json, with what rules.json is made from checked."""
    out = {}
    for i, row in enumerate(rec.get("results", list_of(mapping()))):
        r = Record(row, rec.path, rec.fix, f"results[{i}].")
        curve = r.get("curve", list_of(mapping(), nonempty=True))
        for j, point in enumerate(curve):
            p = Record(point, rec.path, rec.fix, f"results[{i}].curve[{j}].")
            p.get("target_rate", number(0, 1))
            p.get("threshold", number())
            p.get("alpha", list_of(number(), nonempty=True))
            p.get("b", list_of(number(), nonempty=True))
        out[(r.get("source", string()), r.get("method", string()))] = curve, r.get("aurc", mapping())
    return out


def _differs(cfg: RunConfig, ev: Evaluation, rec: Record) -> str:
    """Which setting the earlier evaluation was made under differs from this one ('' when none)."""
    now = json.loads(json.dumps(report_record(cfg, ev)))  # as report.json holds it (tuples as lists)
    for key in SETTINGS:
        if rec.get(key, lambda v: v, None) != now[key]:
            return f"they were made under another {key}: {rec.data.get(key)!r}, now {now[key]!r}"
    if rec.section("config").get("rejection_grid", list_of(number()), None) != now["config"]["rejection_grid"]:
        return "they were made on another evaluate.rejection_grid"
    part = rec.section("samples").section("rejectors_fitted_on").get("indices", list_of(integer()), None)
    if part != now["samples"]["rejectors_fitted_on"]["indices"]:
        return "their rejectors were fitted on another part of tune"
    # rules.json's own record, not read_rules: that one refuses the whole file once a source is stale,
    # while here the stale sources are left out one by one (_made_again).
    rules = read_record(cfg.paths.rules, RULES_FORMAT, "the rules file", RULES_FIX)
    if rules.get("groups", list_of(string()), None) != ev.groups or rules.get(
        "class_group", list_of(integer()), None
    ) != list(ev.class_group):
        return "they were made under other groups (data.tail_max_count or the class counts)"
    return ""


def _made_again(cfg: RunConfig, sources: list[str]) -> list[str]:
    """The ``sources`` whose logits set is not the one the earlier evaluation recorded (argse.filesets)."""
    try:
        recorded = filesets.read_set(cfg.paths.evaluation, "the earlier evaluation").made_from
    except ArgseError:  # no commit record: nothing shows what the earlier results were made from
        recorded = {}
    out = cfg.paths.out
    return [s for s in sources if recorded.get(set_folder(s)) is None
            or filesets.current_id(out / set_folder(s)) != recorded[set_folder(s)]]  # fmt: skip


def _fold(ev: Evaluation, earlier: dict, leave_out: list[str]) -> Evaluation:
    """``ev`` with the earlier results of the sources it did not evaluate (but ``leave_out``), in the earlier
    order of sources, new sources last."""
    evaluated = set(_sources(ev.curves))
    order = _sources(earlier) + [s for s in _sources(ev.curves) if s not in set(_sources(earlier))]
    curves, aurcs = {}, {}
    for source in order:
        if source in evaluated:
            keys = [k for k in ev.curves if k[0] == source]
            curves |= {k: ev.curves[k] for k in keys}
            aurcs |= {k: ev.aurcs[k] for k in keys}
        elif source not in leave_out:
            keys = [k for k in earlier if k[0] == source]
            curves |= {k: earlier[k][0] for k in keys}
            aurcs |= {k: earlier[k][1] for k in keys}
    return replace(ev, curves=curves, aurcs=aurcs)
