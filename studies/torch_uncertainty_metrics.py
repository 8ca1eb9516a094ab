"""argse's selective-classification figures next to torch-uncertainty's on the same synthetic scores (optional).

    /path/to/tu-venv/bin/python -m studies.torch_uncertainty_metrics [--n 2000] [--seed 0]

torch-uncertainty is not a dependency of argse: run this with the python of a separate venv that has it, from
the repository root (argse is then imported from the working tree). Without it, the study says so and exits 0.
One way to build that venv (torch from the same pins as argse's; torch-uncertainty without its extras, then
what ``torch_uncertainty.metrics`` imports, since ``import torch_uncertainty`` loads its Lightning utilities):

    python -m venv VENV
    VENV/bin/pip install -c constraints.txt torch numpy matplotlib
    VENV/bin/pip install -c constraints.txt --no-deps torch-uncertainty
    VENV/bin/pip install -c constraints.txt torchmetrics lightning-utilities einops "lightning<2.7" rich \
        torchvision seaborn

What is compared. One confidence score per sample and whether the prediction is right (N samples, seeded,
confidence and correctness correlated). argse gets a curve with one rule per sample count (the rule at rejection
rate j/N accepts the N - j most confident), one group (k=1) and unit weights, and ``summarise`` reports its
figures; torch-uncertainty's metrics (``torch_uncertainty.metrics.classification``) get the same scores as
class probabilities whose top class is the prediction. With one group and unit weights the two compute the
same things:

- AURC: the mean selective risk over coverage (Geifman & El-Yaniv), the trapezoid on the points k/N.
- AUGRC: the mean generalized risk P(accepted and wrong) over coverage (Traub et al. 2024).
- E-AURC: torch-uncertainty (0.13) has none; its column is its AURC less its AURC of the oracle ranking (every
  right prediction ahead of every wrong one), which is argse's oracle (errors rejected first) for one group.
- risk@coverage=c: the risk of the top c*N samples. torch-uncertainty (RiskAtxCov) takes the ceil(c*N) most
  confident; argse interpolates its curve linearly between the two neighbouring points. Equal when c*N is whole.
- coverage@risk=r: the largest coverage whose risk is at most r (CovAtxRisk); argse reports 0 where none meets
  r, torch-uncertainty NaN.
- risk@coverage=1: the error rate of all samples.

The residual differences of the areas are exact and of order 1/N: torch-uncertainty integrates over coverages
[1/N, 1] and divides by 1 - 1/N; argse integrates over rejection rates [0, 1] and holds the curve at its last
point (coverage 1/N) up to rejection rate 1, so argse - torch-uncertainty = (y(1/N) - torch-uncertainty) / N
for each area (y: the integrated per-point curve). The study checks that too. Its torch-uncertainty
coverages are float32, hence differences near 1e-8 elsewhere.

Where argse differs in what it reports (not exercised here): its figures are per group and reduced by their
mean (balanced_error) or max (worst_group_error), every count weighted by pi_test(y) / pi_split(y) under the
training prior; its areas are taken over rejection rates [0, 0.8] (curve_metrics.HEADLINE_SPAN), not over all
coverages; and a curve is a grid of fitted rules (one per target rejection rate), not the sorting of one score,
so its points need not be nested. This study sets HEADLINE_SPAN to (0, 1) for its own computation only, and
prints argse's [0, 0.8] figures below the table for reference. torch-uncertainty scores one unweighted score
over all samples.
"""

from __future__ import annotations

import argparse
import contextlib
import math

import numpy as np

from argse.selective import curve_metrics
from argse.selective.curve_metrics import Targets, summarise

CLASSES = 10
COVERAGE = 0.8  # torch-uncertainty's RiskAt80Cov and argse's default Targets.coverage
RISKS = (0.05, 0.1)  # torch-uncertainty's CovAt5Risk and argse's default Targets.risk
AREAS = ("aurc", "augrc", "e_aurc")


def synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """[N] confidences in (1/C, 1) and [N] booleans (right), right more often the more confident."""
    rng = np.random.default_rng(seed)
    u = rng.random(n)
    confidence = 1.0 / CLASSES + (1.0 - 1.0 / CLASSES) * (0.02 + 0.96 * u)
    right = rng.random(n) < 0.45 + 0.55 * u
    return confidence, right


def curve(confidence: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """accepted [N, N]: the rule at rejection rate j/N accepts the N - j most confident; and the rates."""
    n = len(confidence)
    rank = np.empty(n, int)
    rank[np.argsort(-confidence)] = np.arange(n)
    accepted = rank[None, :] < (n - np.arange(n))[:, None]
    return accepted, [j / n for j in range(n)]


@contextlib.contextmanager
def span(lo: float, hi: float):
    """argse's areas over rejection rates [lo, hi] inside the block (curve_metrics reads HEADLINE_SPAN per call)."""
    saved = curve_metrics.HEADLINE_SPAN
    curve_metrics.HEADLINE_SPAN = (lo, hi)
    try:
        yield
    finally:
        curve_metrics.HEADLINE_SPAN = saved


def argse_figures(confidence: np.ndarray, right: np.ndarray, targets: Targets, full: bool) -> dict[str, float]:
    """summarise's figures for one group with unit weights (balanced and worst group coincide), over rejection
    rates [0, 1] (``full``) or argse's headline span."""
    n = len(confidence)
    accepted, rates = curve(confidence)
    correct = np.broadcast_to(right, accepted.shape)
    zeros = np.zeros(n, int)
    with span(0.0, 1.0) if full else contextlib.nullcontext():
        figures = summarise({"score": (accepted, correct)}, zeros, 1, np.ones(n), zeros, rates, targets)["score"]
    balanced, worst = figures.figures["balanced_error"], figures.figures["worst_group_error"]
    assert all(math.isclose(balanced[f], worst[f], abs_tol=1e-12) for f in balanced), "one group: mean == max"
    return balanced


def probabilities(confidence: np.ndarray, right: np.ndarray, rng: np.random.Generator):
    """[N, C] float64 probabilities whose top class (probability ``confidence``) is the prediction, and [N]
    labels that agree with it where ``right``."""
    import torch

    n = len(confidence)
    predicted = rng.integers(0, CLASSES, n)
    labels = np.where(right, predicted, (predicted + rng.integers(1, CLASSES, n)) % CLASSES)
    probs = np.repeat(((1.0 - confidence) / (CLASSES - 1))[:, None], CLASSES, axis=1)
    probs[np.arange(n), predicted] = confidence
    return torch.from_numpy(probs), torch.from_numpy(labels)


def tu_figures(confidence: np.ndarray, right: np.ndarray, seed: int) -> dict[str, float]:
    """torch-uncertainty's metrics on the same scores, keyed by argse's figure names."""
    from torch_uncertainty.metrics.classification import AUGRC, AURC, CovAtxRisk, RiskAtxCov

    rng = np.random.default_rng([seed, 1])
    probs, labels = probabilities(confidence, right, rng)
    oracle, _ = probabilities(np.where(right, 0.9, 0.5), right, np.random.default_rng([seed, 1]))

    def value(metric, p=probs) -> float:
        metric.update(p, labels)
        return float(metric.compute())

    out = {"aurc": value(AURC()), "augrc": value(AUGRC())}
    out["e_aurc"] = out["aurc"] - value(AURC(), oracle)
    out[f"risk@coverage={COVERAGE:g}"] = value(RiskAtxCov(cov_threshold=COVERAGE))
    for r in RISKS:
        out[f"coverage@risk={r:g}"] = value(CovAtxRisk(risk_threshold=r))
    out["risk@coverage=1"] = value(RiskAtxCov(cov_threshold=1.0))
    return out


def last_points(confidence: np.ndarray, right: np.ndarray) -> dict[str, float]:
    """Each area's per-point curve at coverage 1/N (the most confident sample alone)."""
    top = bool(right[np.argmax(confidence)])
    n, wrong = len(right), int((~right).sum())
    risk = 0.0 if top else 1.0
    oracle = 1.0 if wrong == n else 0.0  # the oracle keeps a right prediction while there is one
    return {"aurc": risk, "augrc": risk / n, "e_aurc": risk - oracle}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=2000, help="samples (default 2000)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    try:
        import torch_uncertainty
        from torch_uncertainty.metrics.classification import AURC  # noqa: F401
    except ImportError as e:
        print(f"torch-uncertainty is not importable here ({e}): install it in a separate venv (see this module's "
              "docstring) and run `VENV/bin/python -m studies.torch_uncertainty_metrics` from the repository root.")  # fmt: skip
        return 0

    confidence, right = synthetic(args.n, args.seed)
    ours: dict[str, float] = {}
    for r in RISKS:
        ours |= argse_figures(confidence, right, Targets(coverage=COVERAGE, risk=r), full=True)
    theirs = tu_figures(confidence, right, args.seed)
    headline = argse_figures(confidence, right, Targets(coverage=COVERAGE, risk=RISKS[-1]), full=False)

    print(f"torch-uncertainty {torch_uncertainty.__version__}; N={args.n}, seed={args.seed}, "
          f"error rate {1 - right.mean():.4f}; areas over coverage [0, 1]\n")  # fmt: skip
    print("| figure | argse | torch-uncertainty | \\|difference\\| |")
    print("| --- | ---: | ---: | ---: |")
    for name, tu in theirs.items():
        label = name + (" (tu: AURC - AURC of the oracle ranking)" if name == "e_aurc" else "")
        print(f"| {label} | {ours[name]:.6f} | {tu:.6f} | {abs(ours[name] - tu):.2e} |")
    expected = {f: (y - theirs[f]) / args.n for f, y in last_points(confidence, right).items()}
    gap = max(abs((ours[f] - theirs[f]) - expected[f]) for f in AREAS)
    print(f"\nThe areas' differences are (y(1/N) - tu) / N, the held last point of argse's curve: "
          f"{', '.join(f'{f} {expected[f]:+.2e}' for f in AREAS)} (off by at most {gap:.1e}).")  # fmt: skip
    print("argse over its headline rejection rates [0, 0.8], as its reports print: "
          + ", ".join(f"{f} {headline[f]:.6f}" for f in AREAS) + ".")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
