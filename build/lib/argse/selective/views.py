"""What every selective rule reads and does: a source's probabilities summarised per group, a rule's
score and prediction, and the threshold that rejects a given share.

Every rule here has one shape. With class probabilities p_y(x), groups [y] and per-group
vectors alpha, b:
    predict  argmax_y alpha_[y] p_y(x)
    accept   iff  s(x) = max_y alpha_[y] p_y(x) - sum_y b_[y] p_y(x)  >=  t      (t = -c)
Chow's rule is alpha = b = 1 (accept iff max_y p_y >= 1 - c). Because alpha and b are constant within
a group, s(x) and the prediction depend only on each group's top probability and mass, so a
rule costs O(N K) to apply and whole grids of multipliers are evaluated at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

# The error of a group that accepts nothing. Narasimhan et al. define e_k = P(y != h(x) | r(x) = 0, y in G_k)
# (Sec. 3.2, Eq. 6; Sec. 5, Eq. 14): 0/0 there, and their theory assumes it away (Assumption 2: every group keeps
# an acceptance of at least kappa > 0). argse counts it as all-wrong, the largest error a group can have, so that
# no rule lowers its group errors by rejecting a whole group; evaluate_rule marks such points (docs/selective.md).
EMPTY_GROUP_ERROR = 1.0
# Sorted weights are summed in chunks of this many: one cumulative sum over the chunks finds the chunk where
# the running weight passes the limit, and only that chunk is summed position by position.
CHUNK = 64


@dataclass
class GroupView:
    """Per-sample summaries of class probabilities by group; all a rule needs."""

    top: np.ndarray  # [N, K] highest probability among each group's classes
    mass: np.ndarray  # [N, K] total probability of each group's classes
    hit: np.ndarray  # [N, K] whether the group's top class is the true label
    group: np.ndarray  # [N] group of the true label
    k: int
    weight: np.ndarray  # [N] sample weight: 1 for the split as it is, pi_train(y) / pi_split(y) for the train prior

    @cached_property
    def columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """top, mass and hit as contiguous [K, N] rows, made once per view: what score reads."""
        return tuple(np.ascontiguousarray(x.T) for x in (self.top, self.mass, self.hit))

    @cached_property
    def group_weight(self) -> np.ndarray:
        """[N, K]: each sample's weight in the column of its true group, 0 elsewhere (group sums are one product)."""
        return group_weights(self.group, self.k, self.weight)

    @cached_property
    def finite(self) -> bool:
        """Whether every group has a top probability (a group without classes has -inf)."""
        return bool(np.isfinite(self.top).all())


def group_view(
    probs: np.ndarray, labels: np.ndarray, class_group: np.ndarray, k: int, weight: np.ndarray | None = None
) -> GroupView:
    top, mass, hit = group_summaries(probs, labels, class_group, k)
    return GroupView(
        top, mass, hit, class_group[labels], k, np.ones(len(labels)) if weight is None else np.asarray(weight, float)
    )


def group_summaries(
    probs: np.ndarray, labels: np.ndarray, class_group: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each group's top probability, its mass and whether its top class is the label, per row of ``probs``
    [N, C]: the one pass over the classes. Every row is reduced on its own, so summaries of row blocks
    equal those of the whole array."""
    n = len(labels)
    top, mass, hit = np.zeros((n, k)), np.zeros((n, k)), np.zeros((n, k), dtype=bool)
    for g in range(k):
        cls = np.flatnonzero(class_group == g)
        if len(cls) == 0:
            top[:, g] = -np.inf
            continue
        # A group of consecutive classes is searched for its top in place (fast along a row), but its mass is
        # summed from a gathered copy, whose layout makes the sum run class after class, as it always has.
        gathered = probs[:, cls]
        sub = probs[:, cls[0] : cls[-1] + 1] if cls[-1] - cls[0] == len(cls) - 1 else gathered
        arg = sub.argmax(1)
        top[:, g], mass[:, g], hit[:, g] = sub[np.arange(n), arg], gathered.sum(1), cls[arg] == labels
    return top, mass, hit


def subset(view: GroupView, idx: np.ndarray) -> GroupView:
    return GroupView(view.top[idx], view.mass[idx], view.hit[idx], view.group[idx], view.k, view.weight[idx])


def score(view: GroupView, alpha: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """s(x) and correctness of the prediction, for rules stacked in the leading dims of alpha, b [..., K]."""
    lead = np.broadcast_shapes(alpha.shape[:-1], b.shape[:-1])
    a = np.broadcast_to(alpha, (*lead, view.k)).reshape(-1, view.k)
    bb = np.broadcast_to(b, (*lead, view.k)).reshape(-1, view.k)
    best, correct = weighted_top(view, a)
    best -= bb @ view.columns[1]  # sum_k b_k m_k, one product as BLAS sums it
    return best.reshape(*lead, -1), correct.reshape(*lead, -1)


def weighted_top(view: GroupView, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """max_k a_k top_k(x) and whether that group's top class is the label, for the rows of a [G, K]."""
    top, _, hit = view.columns
    # Products by matrix products: numpy broadcasts a column of weights across samples slowly, BLAS does not.
    # Each a_k top_k is one exact product (a row of a with zeros elsewhere), so max and argmax compare the
    # same numbers as elementwise products would.
    best, correct = None, None
    for k in range(view.k):
        if view.finite:
            only = np.zeros_like(a)
            only[:, k] = a[:, k]
            weighted = only @ top
        else:  # 0 * -inf is not 0
            weighted = a[:, k, None] * top[k]
        if best is None:
            best, correct = weighted, hit[k]
            continue
        better = weighted > best  # ties keep the earlier group, as argmax does
        np.maximum(best, weighted, out=best)
        correct = correct ^ (better & (correct ^ hit[k]))  # hit[k] where better (np.where is slow on bools)
    return best, (np.broadcast_to(correct, best.shape).copy() if correct.ndim == 1 else correct)


def decide(
    probs: np.ndarray, class_group: np.ndarray, k: int, alpha: np.ndarray, b: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Predicted class and score s(x) of one rule for unlabelled ``probs`` [N, C], computed exactly as
    :func:`score` computes them (the same group-by-group order, so ties resolve the same way)."""
    view = group_view(probs, np.zeros(len(probs), dtype=np.int64), class_group, k)
    s, _ = score(view, alpha, b)
    top_class = np.zeros((len(probs), k), dtype=np.int64)
    for g in range(k):
        cls = np.flatnonzero(class_group == g)
        if len(cls):
            top_class[:, g] = cls[probs[:, cls].argmax(1)]
    pred, best = top_class[:, 0], alpha[0] * view.top[:, 0]
    for g in range(1, k):
        weighted = alpha[g] * view.top[:, g]
        better = weighted > best  # ties keep the earlier group, as in score()
        pred, best = np.where(better, top_class[:, g], pred), np.where(better, weighted, best)
    return pred, s


def threshold(s: np.ndarray, rate: float, weight: np.ndarray | None = None) -> np.ndarray:
    """Weighted rate-quantile of s along the last axis: the t at the first sorted position whose
    preceding weight exceeds ``rate`` of the total, so about that share of the weight lies below t.

    Put differently, t is the largest value v with weight(s < v) <= rate * total, which does not
    depend on how tied values are ordered, so the sort need not be stable. With equal weights this
    is the floor(rate * N)-th smallest value, found by a partition.
    """
    n = s.shape[-1]
    if weight is None or np.all(weight == weight[0]):
        kth = min(int(np.floor(rate * n)), n - 1)
        return np.partition(s, kth, axis=-1)[..., kth]
    rows = np.asarray(s, np.float64).reshape(-1, n)
    limit = rate * weight.sum() * (1 + 1e-12)
    keys, bits = sort_keys(rows)
    order = keys & ((1 << bits) - 1)
    kth = last_position_within(np.take(weight, order), limit)
    t = rows[np.arange(len(rows)), order[np.arange(len(rows)), kth]]
    # A key keeps about 38 bits of each score's mantissa: scores closer than that may be out of order, which
    # matters only where they meet the chosen position; those rows (none, nearly always) are sorted exactly,
    # as are rows with an infinite score.
    near = near_ties(keys, kth, bits) | np.isnan(keys[:, -1].view(np.float64))
    if near.any():
        t[near] = _threshold_argsort(rows[near], limit, weight)
    return t.reshape(s.shape[:-1])


def sort_keys(rows: np.ndarray) -> tuple[np.ndarray, int]:
    """Each row's scores with their column written into the lowest ``bits`` bits of the mantissa, sorted as
    floats (one plain sort gives the order, with no argsort and no gather of the values), and viewed as int64.

    Clearing low bits moves a float towards zero, so scores that differ in the bits kept keep their order.
    An infinite score would become NaN and sort last: rows whose last key is NaN are sorted exactly instead.
    """
    bits = max(1, (rows.shape[-1] - 1).bit_length())
    keys = rows.view(np.int64) & -(1 << bits)
    keys |= np.arange(rows.shape[-1], dtype=np.int64)
    keys.view(np.float64).sort(axis=-1)
    return keys, bits


def near_ties(keys: np.ndarray, kth: np.ndarray, bits: int) -> np.ndarray:
    """Rows whose chosen key shares its score bits with a neighbour's."""
    r, n = np.arange(len(keys)), keys.shape[-1]
    at = keys[r, kth] >> bits
    return ((kth > 0) & (keys[r, np.maximum(kth - 1, 0)] >> bits == at)) | (
        (kth < n - 1) & (keys[r, np.minimum(kth + 1, n - 1)] >> bits == at)
    )


def last_position_within(w: np.ndarray, limit: float) -> np.ndarray:
    """Per row of sorted weights w, the last position whose preceding weight is at most ``limit`` (at least 0)."""
    g, n = w.shape
    starts = np.arange(0, n, CHUNK)
    sums = np.add.reduceat(w, starts, axis=1)
    before_chunk = np.cumsum(sums, axis=1) - sums
    c = np.maximum((before_chunk <= limit).sum(1) - 1, 0)
    cols = starts[c][:, None] + np.arange(CHUNK)
    inside = np.take_along_axis(w, np.minimum(cols, n - 1), 1)
    inside[cols >= n] = 0.0  # past the end of a short last chunk
    before = before_chunk[np.arange(g), c][:, None] + np.cumsum(inside, 1) - inside
    return np.clip(starts[c] + (before <= limit).sum(1) - 1, 0, n - 1)


def _threshold_argsort(rows: np.ndarray, limit: float, weight: np.ndarray) -> np.ndarray:
    """The exact weighted quantile by a full argsort (rows with near ties)."""
    n = rows.shape[-1]
    order = np.argsort(rows, axis=-1)
    w = weight[order]
    before = np.cumsum(w, axis=-1) - w
    kth = np.clip((before <= limit).sum(-1) - 1, 0, n - 1)
    return rows[np.arange(len(rows)), order[np.arange(len(rows)), kth]]


def group_weights(group: np.ndarray, k: int, weight: np.ndarray | None = None) -> np.ndarray:
    """[N, K]: each sample's weight (1 without weights) in the column of its group, 0 elsewhere."""
    onehot = (group[:, None] == np.arange(k)).astype(float)
    if weight is not None:
        onehot *= weight[:, None]
    return onehot


def group_rates(
    accepted: np.ndarray, correct: np.ndarray, group: np.ndarray, k: int, weight: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-group error among accepted samples, coverage within the group, and the joint
    P(accepted, group), all under the sample weights, stacked over leading dims."""
    onehot = group_weights(group, k, weight)
    err, acc_n = accepted_errors(accepted, correct, onehot)
    total = len(group) if weight is None else weight.sum()
    return err, acc_n / np.maximum(onehot.sum(0), 1e-300), acc_n / total


def accepted_errors(accepted: np.ndarray, correct: np.ndarray, onehot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-group error among accepted samples and the accepted weight per group, from group_weights."""
    acc_n = accepted.astype(float) @ onehot  # [..., K]
    err_n = np.greater(accepted, correct).astype(float) @ onehot  # accepted and wrong
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(acc_n > 0, err_n / acc_n, EMPTY_GROUP_ERROR), acc_n
