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


class RulesModel(Record):
    """rules.json: the settings the rules depend on, the groups, and source -> method -> rules."""

    format: Literal["argse.rules/1"]
    test_prior: Literal["train", "balanced"]
    protocol: Literal["argse", "paper"]
    groups: list[str] = Field(min_length=1)
    class_group: list[Count] = Field(min_length=1)
    rules: dict[str, dict[str, list[FittedRule]]] = Field(min_length=1)

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
        source = source or self.default_source()
        if source not in self.fitted:
            raise ArgseError(f"no rejector was fitted for source '{source}'; fitted sources: {', '.join(self.fitted)}")
        methods = self.fitted[source]
        if method not in methods:
            raise ArgseError(f"no '{method}' rejector was fitted for {source}; fitted methods: {', '.join(methods)}")
        at = [r for r in methods[method] if abs(r.rate - rate) < 1e-9]
        if not at:
            fitted = ", ".join(f"{r.rate:g}" for r in methods[method])
            raise ArgseError(f"no rule was fitted for rejection rate {rate:g}; fitted rates: {fitted}")
        m, row = self.model, at[0]
        return SelectiveRule(source, method, rate, np.asarray(row.alpha, float), np.asarray(row.b, float), row.t,
                             np.asarray(m.class_group), m.groups, m.protocol)  # fmt: skip


def read_rules(folder: Path) -> RulesFile:
    """rules.json of an evaluation's folder, checked whole (RulesModel)."""
    path = folder / FILE
    return RulesFile(path, read_model(path, RulesModel, "the rules file", FIX))
