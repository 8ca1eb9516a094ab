"""The rules file, ``argse.rules/1``: every rejector ``argse.evaluate`` fitted, for ``argse.predict``.

Per source, method and target rate: alpha and b per group and the threshold t. With probabilities
p_y(x) of the source and groups [y] = class_group[y]: predict argmax_y alpha_[y] p_y(x); accept iff
max_y alpha_[y] p_y(x) - sum_y b_[y] p_y(x) >= t.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import Field, model_validator

from argse.core import storage
from argse.core.errors import ArgseError
from argse.core.records import Count, Finite, Probability, Record, read_model

if TYPE_CHECKING:
    from argse.config.sections import EvaluateConfig
    from argse.selective.sweep import Evaluation

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
        # per source and method, the candidate rules of argse.selective.guarantee, most rejecting first: predict
        # --risk picks among them
        "ladders": {
            s: {m: [r.record() for r in rungs] for (s2, m), rungs in ev.ladders.items() if s2 == s}
            for s in dict.fromkeys(s for s, _ in ev.ladders)
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


class FittedRule(Record):
    """One rule of rules.json: alpha and b per group, threshold t, fitted at target rejection rate ``rate``."""

    rate: Probability
    alpha: list[Finite] = Field(min_length=1)
    b: list[Finite] = Field(min_length=1)
    t: Finite


class LadderRung(Record):
    """One candidate rule of a ladder: alpha, b, t, and per group its tallies on each half of the fitting sample."""

    rate: Probability
    alpha: list[Finite] = Field(min_length=1)
    b: list[Finite] = Field(min_length=1)
    t: Finite
    plan_errors: list[Probability]
    plan_coverage: list[Probability]
    plan_size: list[Finite]
    test_errors: list[Probability]
    test_coverage: list[Probability]
    test_size: list[Finite]


class RulesModel(Record):
    """rules.json: the settings the rules depend on, the groups, and source -> method -> rules."""

    format: Literal["argse.rules/1"]
    test_prior: Literal["train", "balanced"]
    protocol: Literal["argse", "paper"]
    groups: list[str] = Field(min_length=1)
    class_group: list[Count] = Field(min_length=1)
    rules: dict[str, dict[str, list[FittedRule]]] = Field(min_length=1)
    ladders: dict[str, dict[str, list[LadderRung]]] = {}

    @model_validator(mode="after")
    def _shapes(self) -> RulesModel:
        k = len(self.groups)
        if max(self.class_group) >= k:
            raise ValueError(f"class_group names group {max(self.class_group)}, but there are {k} groups")
        for source, methods in self.rules.items():
            if not methods:
                raise ValueError(f"rules.{source} holds no method")
            for method, rows in methods.items():
                for i, row in enumerate(rows):
                    if len(row.alpha) != k or len(row.b) != k:
                        raise ValueError(f"rules.{source}.{method}[{i}] has {len(row.alpha)} alpha and {len(row.b)} "
                                         f"b for {k} groups")  # fmt: skip
        for source, methods in self.ladders.items():
            for method, rungs in methods.items():
                for i, rung in enumerate(rungs):
                    sizes = {len(v) for v in rung.model_dump().values() if isinstance(v, list)}
                    if sizes != {k}:
                        raise ValueError(f"ladders.{source}.{method}[{i}] does not hold one value per group ({k})")
        return self


@dataclass
class RulesFile:
    path: Path
    model: RulesModel

    @property
    def fitted(self) -> dict[str, dict[str, list[FittedRule]]]:
        return self.model.rules

    def default_source(self) -> str:
        """gating when a rejector was fitted for it, else the first source."""
        return "gating" if "gating" in self.fitted else next(iter(self.fitted))

    def rule(self, source: str | None, method: str, rate: float) -> SelectiveRule:
        """The rule of ``source`` (default: :meth:`default_source`) and ``method`` fitted at ``rate``."""
        source, methods = self.methods(source, method)
        at = [r for r in methods[method] if abs(r.rate - rate) < 1e-9]
        if not at:
            fitted = ", ".join(f"{r.rate:g}" for r in methods[method])
            raise ArgseError(f"no rule was fitted for rejection rate {rate:g}; fitted rates: {fitted}")
        m, row = self.model, at[0]
        return SelectiveRule(source, method, rate, np.asarray(row.alpha, float), np.asarray(row.b, float), row.t,
                             np.asarray(m.class_group), m.groups, m.protocol)  # fmt: skip

    def methods(self, source: str | None, method: str) -> tuple[str, dict[str, list[FittedRule]]]:
        source = source or self.default_source()
        if source not in self.fitted:
            raise ArgseError(f"no rejector was fitted for source '{source}'; fitted sources: {', '.join(self.fitted)}")
        methods = self.fitted[source]
        if method not in methods:
            raise ArgseError(f"no '{method}' rejector was fitted for {source}; fitted methods: {', '.join(methods)}")
        return source, methods

    def guaranteed_rule(self, source: str | None, method: str, target) -> SelectiveRule:
        """The rule of largest coverage on ``method``'s ladder that meets ``target`` (a guarantee.Guarantee), or one
        sentence saying none does and what could be guaranteed."""
        from argse.selective.guarantee import Rung, select

        source, _ = self.methods(source, method)
        rungs = self.model.ladders.get(source, {}).get(method)
        if not rungs:
            raise ArgseError(f"{self.path} holds no candidate rules for {source} / {method} (the gate's own rule has "
                             f"none; an evaluation before argse fitted them has none): {FIX}")  # fmt: skip
        k = len(self.model.groups)
        if target.of == "groups" and len(target.risk) != k:
            raise ArgseError(f"the guarantee gives {len(target.risk)} risk(s) for the run's {k} groups "
                             f"({', '.join(self.model.groups)}); give one per group, in that order")  # fmt: skip
        chosen = select([Rung.of_record(r.model_dump()) for r in rungs], target)
        if chosen.rung is None:
            raise ArgseError(chosen.unmet(target, f"{source} / {method}"))
        r, m = chosen.rung.rule, self.model
        return SelectiveRule(source, method, chosen.rung.rate, r.alpha, r.b, r.t, np.asarray(m.class_group), m.groups,
                             m.protocol)  # fmt: skip


def read_rules(folder: Path) -> RulesFile:
    """rules.json of an evaluation's folder, checked whole (RulesModel)."""
    path = folder / FILE
    return RulesFile(path, read_model(path, RulesModel, "the rules file", FIX))
