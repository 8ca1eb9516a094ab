"""The gate's files, ``argse.gate/1``: ``gate.json`` (settings, samples, reports) and, for a learned
gate, ``gate.safetensors`` (the network), written and read as one thing, inside the gate's stage
(argse.stages.gate), which also holds the mixture's logits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator

from argse.core import storage
from argse.core.errors import ArgseError
from argse.core.records import Count, Finite, Probability, Record, read_model
from argse.gating.network import GateMLP, features_of

FORMAT = "argse.gate/1"
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


class GateSettings(Record):
    """gate.json's ``config``: the gating settings the gate was made with (those a reader uses are checked)."""

    top_k: Annotated[int, Field(ge=1, strict=True)]
    features: Literal["rich", "rich+posteriors"]
    hidden: list[Annotated[int, Field(ge=1, strict=True)]] = []
    dropout: Probability = 0.0
    fixed_weights: list[Annotated[float, Field(ge=0, allow_inf_nan=False)]] = []


class LearnedRule(Record):
    """A rule a selective gate learned: group weights alpha and b, threshold t, at target rate ``rate``."""

    rate: Probability
    alpha: list[Finite] = Field(min_length=1)
    b: list[Finite] = Field(min_length=1)
    t: Finite

    @model_validator(mode="after")
    def _same_groups(self) -> LearnedRule:
        if len(self.b) != len(self.alpha):
            raise ValueError(f"b has {len(self.b)} values for {len(self.alpha)} groups")
        return self


class Part(Record):
    indices: list[Count]


class Samples(Record):
    left_for_rejectors: Part


class GateFile(Record):
    """gate.json: which experts the gate mixes, how (learned, uniform or fixed weights), its settings, the samples
    of tune it left to the rejectors, and (a selective gate) its learned rules."""

    format: Literal["argse.gate/1"]
    experts: list[str] = Field(min_length=1)
    gate: Literal["learned", "uniform", "fixed"]
    config: GateSettings
    samples: Samples
    feature_dim: Annotated[int, Field(ge=1, strict=True)] | None = None
    rules: list[LearnedRule] | None = None

    @model_validator(mode="after")
    def _kind(self) -> GateFile:
        if self.gate == "learned" and self.feature_dim is None:
            raise ValueError("a learned gate needs feature_dim")
        if self.gate == "fixed":
            w = self.config.fixed_weights
            if len(w) != len(self.experts) or sum(w) <= 0:
                raise ValueError(f"config.fixed_weights must give {len(self.experts)} weights, not all zero")
        return self


def _network(weights: Path, info: GateFile) -> GateMLP:
    net = GateMLP(info.feature_dim, len(info.experts), info.config.hidden, info.config.dropout)
    tensors, _ = storage.load_tensors(weights, "gate")
    try:
        net.load_state_dict(tensors)
    except RuntimeError as exc:
        detail = " ".join(line.strip() for line in str(exc).splitlines()[1:3])
        raise ArgseError(f"{weights} does not fit the network gate.json describes ({detail}); {FIX}") from None
    return net.eval()


def read_gate(folder: Path) -> Gate:
    """gate.json (and gate.safetensors for a learned gate) of a gate's folder, checked whole (GateFile)."""
    path = folder / GATE_JSON
    info = read_model(path, GateFile, "the gate file", FIX)
    network, fixed, cfg = None, None, info.config
    if info.gate == "learned":
        network = _network(folder / GATE_WEIGHTS, info)
    elif info.gate == "uniform":
        fixed = [1.0 / len(info.experts)] * len(info.experts)
    else:
        fixed = [v / sum(cfg.fixed_weights) for v in cfg.fixed_weights]
    rules = [r.model_dump() for r in info.rules] if info.rules is not None else None
    return Gate(path, info.experts, info.gate, info.model_dump(), network, fixed, rules,
                info.samples.left_for_rejectors.indices, cfg.top_k, cfg.features == "rich+posteriors")  # fmt: skip
