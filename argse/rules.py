"""The rules file, ``argse.rules/1``: every rejector ``argse.evaluate`` fitted, for ``argse.predict``.

Per source, method and target rate: alpha and b per group and the threshold t. With probabilities
p_y(x) of the source and groups [y] = class_group[y]: predict argmax_y alpha_[y] p_y(x); accept iff
max_y alpha_[y] p_y(x) - sum_y b_[y] p_y(x) >= t.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from argse import storage
from argse.errors import ArgseError
from argse.records import Record, integer, list_of, mapping, number, read_record, string

if TYPE_CHECKING:
    from argse.config import EvaluateConfig
    from argse.evaluation import Evaluation

FORMAT = "argse.rules/1"
FIX = "rerun python -m argse.evaluate with the same --config and --set"
FILE = "rules.json"


def rules_record(ev: Evaluation, ecfg: EvaluateConfig) -> dict:
    """rules.json's content: the settings the rules depend on and every fitted rule."""
    return {
        "format": FORMAT,
        "test_prior": ecfg.test_prior,
        "protocol": ecfg.protocol,
        # protocol paper scores the softmax of the raw logits; argse the temperature-calibrated one
        "probabilities": "softmax" if ecfg.protocol == "paper" else "calibrated",
        "groups": ev.groups,
        "class_group": ev.class_group,
        "rules": {
            s: {m: [{"rate": r["target_rate"], "alpha": r["alpha"], "b": r["b"], "t": r["threshold"]}
                    for r in ev.curves[(s, m)]] for (s2, m) in ev.curves if s2 == s}
            for s in dict.fromkeys(s for s, _ in ev.curves)
        },
    }  # fmt: skip


def write_rules(folder: Path, ev: Evaluation, ecfg: EvaluateConfig) -> Path:
    return storage.write_json(folder / FILE, rules_record(ev, ecfg))


@dataclass
class SelectiveRule:
    """One fitted rule of one source, ready to apply to unlabelled probabilities."""

    source: str
    method: str
    rate: float
    alpha: np.ndarray  # [K]
    b: np.ndarray  # [K]
    t: float
    class_group: np.ndarray  # [C] group of each class
    groups: list[str]
    protocol: str  # argse: calibrated probabilities; paper: softmax of the raw logits


@dataclass
class RulesFile:
    path: Path
    record: Record
    fitted: dict[str, dict[str, list]]  # source -> method -> rows, as written

    def default_source(self) -> str:
        """gating when a rejector was fitted for it, else the first source."""
        return "gating" if "gating" in self.fitted else next(iter(self.fitted))

    def rule(self, source: str | None, method: str, rate: float) -> SelectiveRule:
        """The rule of ``source`` (default: :meth:`default_source`) and ``method`` fitted at ``rate``, checked."""
        source = source or self.default_source()
        if source not in self.fitted:
            raise ArgseError(f"no rejector was fitted for source '{source}'; fitted sources: {', '.join(self.fitted)}")
        methods = self.fitted[source]
        if method not in methods:
            raise ArgseError(f"no '{method}' rejector was fitted for {source}; fitted methods: {', '.join(methods)}")
        where = f"rules.{source}.{method}"
        rows = [Record(r, self.path, FIX, f"{where}[{i}].") for i, r in enumerate(methods[method])]
        rates = [r.get("rate", number(0, 1)) for r in rows]
        at = [i for i, r in enumerate(rates) if abs(r - rate) < 1e-9]
        if not at:
            fitted = ", ".join(f"{r:g}" for r in rates)
            raise ArgseError(f"no rule was fitted for rejection rate {rate:g}; fitted rates: {fitted}")
        rec = self.record
        groups = rec.get("groups", list_of(string(), nonempty=True))
        k = len(groups)
        class_group = rec.get("class_group", list_of(integer(0, k - 1), nonempty=True))
        row = rows[at[0]]
        return SelectiveRule(
            source, method, rate,
            np.asarray(row.get("alpha", list_of(number(), k)), float),
            np.asarray(row.get("b", list_of(number(), k)), float),
            row.get("t", number()),
            np.asarray(class_group), groups, rec.get("protocol", string(("argse", "paper"))),
        )  # fmt: skip


def read_rules(folder: Path) -> RulesFile:
    """rules.json of an evaluation's folder, checked down to the rule that is used."""
    path = folder / FILE
    rec = read_record(path, FORMAT, "the rules file", FIX)
    fitted = rec.get("rules", mapping())
    for source, methods in fitted.items():
        ok = isinstance(methods, dict) and bool(methods) and all(isinstance(v, list) and all(isinstance(r, dict) for r in v)
                                               for v in methods.values())  # fmt: skip
        if not ok:
            raise rec.fail(f"field 'rules.{source}' must map each method to a list of rules")
    if not fitted:
        raise rec.fail("it holds no fitted rule")
    return RulesFile(path, rec, fitted)
