"""The summary figures of a risk-coverage curve, per group and under the evaluation's sample weights, and
their class-stratified bootstrap.

A curve is a rule per target rejection rate, each measured on ``test``. Everything here follows from four
weighted sums per point and group k (a sample's weight is pi_test(y) / pi_split(y) under the training prior):
W_k (the group), A_k (accepted), E_k (accepted and wrong) and X_k (wrong, accepted or not). With them:

    selective error   e_k  = E_k / A_k              (1 where A_k = 0: EMPTY_GROUP_ERROR)
    generalized risk  g_k  = E_k / W_k              (Traub et al. 2024: P(accepted and wrong | G_k))
    oracle error      e*_k = max(0, X_k - (W_k - A_k)) / A_k
                              (the same predictions, the same share of each group rejected, its errors first:
                               Geifman et al. 2019's optimal ranking, taken within each group)

reduced over the groups by their mean (balanced) or max (worst group). Because every figure is a function of
those sums, a bootstrap resample is one matrix product: the per-sample columns times each resample's counts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from argse.selective.rejectors import aurc
from argse.selective.views import EMPTY_GROUP_ERROR

# The group reductions reported, keyed as AURC keys are.
REDUCTIONS = {"balanced_error": np.mean, "worst_group_error": np.max}
HEADLINE_SPAN = (0.0, 0.8)  # the paper's rejection-rate range, where the new figures are taken
FULL_AURC = "aurc@0-1"  # the AURC over every rate, as the AURC tables' [0, 1] column


@dataclass(frozen=True)
class Targets:
    """The operating points reported: risk at coverage ``coverage``, coverage at risk ``risk``."""

    coverage: float = 0.8
    risk: float = 0.1

    def names(self) -> list[str]:
        """Every figure curve_figures computes; the last, the AURC over all rates, backs the AURC tables' [0, 1]
        column (the others are over HEADLINE_SPAN)."""
        return ["aurc", "augrc", "e_aurc", f"risk@coverage={self.coverage:g}", f"coverage@risk={self.risk:g}",
                "risk@coverage=1", FULL_AURC]  # fmt: skip


def point_columns(accepted: np.ndarray, correct: np.ndarray, group: np.ndarray, k: int, weight: np.ndarray):
    """[N, R * 3K + K] per-sample columns whose weighted sums are A, E, X of every point and then W; ``accepted``
    and ``correct`` are [R, N] (one row per point of the curve)."""
    onehot = (group[:, None] == np.arange(k)) * weight[:, None]  # [N, K]
    wrong = ~correct
    parts = [
        (x.T[:, :, None] * onehot[:, None, :]).reshape(len(group), -1) for x in (accepted, accepted & wrong, wrong)
    ]
    return np.concatenate([*parts, onehot], axis=1)


@dataclass
class Sums:
    """W [B, K] and A, E, X [B, R, K]: the weighted sums of one or many (resampled) test sets."""

    W: np.ndarray
    A: np.ndarray
    E: np.ndarray
    X: np.ndarray

    @classmethod
    def of(cls, totals: np.ndarray, points: int, k: int) -> Sums:
        """From column totals [B, R * 3K + K] as point_columns lays them out."""
        b = totals.shape[0]
        a, e, x = (totals[:, i * points * k : (i + 1) * points * k].reshape(b, points, k) for i in range(3))
        return cls(totals[:, 3 * points * k :], a, e, x)

    def group_figures(self) -> dict[str, np.ndarray]:
        """[B, R, K] selective error, generalized risk and oracle error per group, and [B, R] coverage."""
        w = self.W[:, None, :]
        with np.errstate(invalid="ignore", divide="ignore"):
            error = np.where(self.A > 0, self.E / self.A, EMPTY_GROUP_ERROR)
            oracle = np.where(self.A > 0, np.maximum(0.0, self.X - (w - self.A)) / self.A, EMPTY_GROUP_ERROR)
            general = np.where(w > 0, self.E / w, 0.0)
        coverage = self.A.sum(-1) / self.W.sum(-1)[:, None]
        return {"error": error, "generalized": general, "oracle": oracle, "coverage": coverage}


def span_weights(rates: list[float], lo: float, hi: float, at: float | None = None) -> np.ndarray:
    """[R] weights w with w @ errors = the AURC over [lo, hi] (or, with ``at``, the curve's value at rate ``at``),
    exactly as rejectors.aurc integrates: the curve is linear in the errors, so its unit responses are the weights.
    Points past ``hi`` do not enter, as in sweep.curve_aurcs."""
    keep = [i for i, r in enumerate(rates) if r <= hi + 1e-9]
    out = np.zeros(len(rates))
    for j, i in enumerate(keep):
        unit = np.zeros(len(keep))
        unit[j] = 1.0
        xs = [rates[p] for p in keep]
        out[i] = aurc(xs, unit, lo, hi) if at is None else np.interp(at, np.sort(xs), unit[np.argsort(xs)])
    return out


def curve_figures(sums: Sums, rates: list[float], targets: Targets) -> dict[str, dict[str, np.ndarray]]:
    """{reduction: {figure: [B]}}: every figure of Targets.names for balanced and worst-group error."""
    g = sums.group_figures()
    lo, hi = HEADLINE_SPAN
    area = span_weights(rates, lo, hi)
    at_coverage = span_weights(rates, 0.0, 1.0, at=1.0 - targets.coverage)
    at_full = span_weights(rates, 0.0, 1.0, at=0.0)
    whole = span_weights(rates, 0.0, 1.0)
    out = {}
    for name, reduce in REDUCTIONS.items():
        risk, general, oracle = (reduce(g[f], axis=-1) for f in ("error", "generalized", "oracle"))  # [B, R]
        meets = np.where(risk <= targets.risk + 1e-12, g["coverage"], 0.0)
        out[name] = dict(zip(targets.names(), (
            risk @ area, general @ area, (risk - oracle) @ area, risk @ at_coverage, meets.max(-1), risk @ at_full,
            risk @ whole,
        ), strict=True))  # fmt: skip
    return out


def class_resamples(labels: np.ndarray, resamples: int, seed: int, chunk: int = 250):
    """Yield [b, N] float32 counts of ``resamples`` bootstrap test sets in chunks of at most ``chunk``: each draws,
    within every class, as many samples as the class has, uniformly with replacement (so class counts, and with
    them every prior weight, stay fixed). Seeded: the same labels and seed give the same resamples."""
    rng = np.random.default_rng([seed, 0xB0075])
    members = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    for start in range(0, resamples, chunk):
        b = min(chunk, resamples - start)
        counts = np.zeros((b, len(labels)), np.float32)
        for idx in members:
            counts[:, idx] = rng.multinomial(len(idx), np.full(len(idx), 1.0 / len(idx)), size=b)
        yield counts


def interval(draws: np.ndarray, level: float) -> tuple[float, float]:
    """The percentile interval holding ``level`` of the bootstrap draws."""
    lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


@dataclass
class CurveSummary:
    """One curve's figures on test ({reduction: {figure: value}}), their bootstrap draws ({reduction: {figure:
    [B]}}, empty without resamples) and each point's interval of the selective error ({reduction: [R, 2]})."""

    figures: dict[str, dict[str, float]]
    draws: dict[str, dict[str, np.ndarray]]
    bands: dict[str, np.ndarray]


def summarise(decisions: dict[str, tuple[np.ndarray, np.ndarray]], group: np.ndarray, k: int, weight: np.ndarray,
              labels: np.ndarray, rates: list[float], targets: Targets, resamples: int = 0, seed: int = 0,
              level: float = 0.95) -> dict[str, CurveSummary]:  # fmt: skip
    """Every curve's figures, from ``decisions`` {curve: (accepted [R, N], correct [R, N])} on one test set; with
    ``resamples``, also their class-stratified bootstrap (the same resamples for every curve, so two curves'
    draws pair up), one matrix product per chunk of resamples for all curves at once."""
    names = list(decisions)
    points = len(rates)
    columns = np.concatenate([point_columns(a, c, group, k, weight) for a, c in decisions.values()], axis=1)
    width = columns.shape[1] // len(names)

    def per_curve(totals: np.ndarray) -> list[tuple[dict, np.ndarray]]:
        out = []
        for i in range(len(names)):
            sums = Sums.of(totals[:, i * width : (i + 1) * width], points, k)
            risk = {n: reduce(sums.group_figures()["error"], axis=-1) for n, reduce in REDUCTIONS.items()}
            out.append((curve_figures(sums, rates, targets), risk))
        return out

    exact = per_curve(columns.sum(0, keepdims=True))
    summaries = {
        n: CurveSummary({r: {f: float(v[0]) for f, v in figs.items()} for r, figs in fig.items()}, {}, {})
        for n, (fig, _) in zip(names, exact, strict=True)
    }
    if resamples <= 0:
        return summaries
    chunks = [per_curve(counts @ columns.astype(np.float32)) for counts in class_resamples(labels, resamples, seed)]
    for i, n in enumerate(names):
        s = summaries[n]
        for r in REDUCTIONS:
            s.draws[r] = {f: np.concatenate([c[i][0][r][f] for c in chunks]) for f in targets.names()}
            risk = np.concatenate([c[i][1][r] for c in chunks])  # [B, R]
            s.bands[r] = np.quantile(risk, [(1 - level) / 2, (1 + level) / 2], axis=0).T
    return summaries
