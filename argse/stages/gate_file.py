"""The gate's files, ``argse.gate/1``: ``gate.json`` (settings, samples, reports) and, for a learned
gate, ``gate.safetensors`` (the network), written and read as one thing, inside the gate's stage
(argse.stages.gate), which also holds the mixture's logits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from argse import storage
from argse.errors import ArgseError
from argse.gating.network import GateMLP, features_of
from argse.records import Record, integer, list_of, mapping, number, read_record, string

FORMAT = "argse.gate/1"
KINDS = ("learned", "uniform", "fixed")
FIX = "rerun python -m argse.train_gating with the same --config and --set"


GATE_JSON, GATE_WEIGHTS = "gate.json", "gate.safetensors"


def write_gate(folder: Path, info: dict, network: GateMLP | None) -> Path:
    """The network (if learned) and gate.json, into ``folder``."""
    if network is not None:
        meta = {"format": FORMAT, "experts": ",".join(info["experts"])}
        storage.save_tensors(folder / GATE_WEIGHTS, network.state_dict(), meta)
    return storage.write_json(folder / GATE_JSON, dict(info, format=FORMAT))


@dataclass
class Gate:
    """A trained or fixed gate as read back: which experts it mixes and how it weights them."""

    path: Path
    experts: list[str]
    kind: str  # learned | uniform | fixed
    info: dict  # gate.json as written
    network: GateMLP | None
    fixed: list[float] | None  # normalised weights of a uniform or fixed gate
    rules: list[dict] | None  # the rules a selective gate learned, {rate, alpha, b, t}
    rejector_indices: list[int]  # tune samples left to the rejectors
    top_k: int  # the features the network reads (gating_features), as checked
    with_posteriors: bool

    def log_weights(self, logp: torch.Tensor) -> torch.Tensor:
        """Per-sample log mixture weights [N, E] from the experts' calibrated log-probabilities [E, N, C]."""
        if self.network is None:
            w = torch.tensor(self.fixed, dtype=torch.float64)
            return w.clamp_min(1e-300).log().expand(logp.shape[1], -1)
        feats = features_of(logp, self.top_k, self.with_posteriors)
        if feats.shape[1] != self.network.mean.numel():
            raise ArgseError(
                f"{self.path}: config.top_k / config.features give {feats.shape[1]} features but its network reads "
                f"{self.network.mean.numel()}; {FIX}"
            )
        with torch.no_grad():
            return F.log_softmax(self.network(feats), 1).double()


def _rules(rec: Record) -> list[dict] | None:
    rules = rec.get("rules", list_of(mapping()), None)
    if rules is None:
        return None
    out = []
    for i, r in enumerate(rules):
        row = Record(r, rec.path, rec.fix, f"rules[{i}].")
        alpha = row.get("alpha", list_of(number(), nonempty=True))
        out.append({"rate": row.get("rate", number(0, 1)), "alpha": alpha,
                    "b": row.get("b", list_of(number(), len(alpha))), "t": row.get("t", number())})  # fmt: skip
    return out


def _network(weights: Path, rec: Record, experts: list[str]) -> GateMLP:
    cfg = rec.section("config")
    hidden = cfg.get("hidden", list_of(integer(1)))
    net = GateMLP(rec.get("feature_dim", integer(1)), len(experts), hidden, cfg.get("dropout", number(0, 1)))
    tensors, _ = storage.load_tensors(weights, "gate")
    try:
        net.load_state_dict(tensors)
    except RuntimeError as exc:
        detail = " ".join(line.strip() for line in str(exc).splitlines()[1:3])
        raise rec.fail(f"{weights} does not fit the network gate.json describes ({detail})") from None
    return net.eval()


def read_gate(folder: Path) -> Gate:
    """gate.json (and gate.safetensors for a learned gate) of a gate's folder, every field checked."""
    rec = read_record(folder / GATE_JSON, FORMAT, "the gate file", FIX)
    experts = rec.get("experts", list_of(string(), nonempty=True))
    kind = rec.get("gate", string(KINDS))
    cfg = rec.section("config")
    top_k = cfg.get("top_k", integer(1))
    with_posteriors = cfg.get("features", string(("rich", "rich+posteriors"))) == "rich+posteriors"
    network, fixed = None, None
    if kind == "learned":
        network = _network(folder / GATE_WEIGHTS, rec, experts)
    elif kind == "uniform":
        fixed = [1.0 / len(experts)] * len(experts)
    else:
        w = cfg.get("fixed_weights", list_of(number(0), len(experts)))
        if sum(w) <= 0:
            raise rec.fail("config.fixed_weights are all zero")
        fixed = [v / sum(w) for v in w]
    left = rec.section("samples").section("left_for_rejectors").get("indices", list_of(integer(0)))
    return Gate(folder / GATE_JSON, experts, kind, rec.data, network, fixed, _rules(rec), left, top_k, with_posteriors)
