"""The stages a run config names, each found by the id its config and its upstream stages give.

Every key holds the data settings (paths left out, so a moved dataset or run still finds its stages) and the
run seed; then, per kind:

- ``splits``: nothing more, and no group thresholds (the split manifest and preprocess.json do not depend on
  them);
- ``expert``: the resolved recipe, the model, the split stage's content and the content of every expert it
  builds on (``requires``: decoupling's ``stage1_from``, a derived expert's ``source``); logits imported under
  a name no expert is registered by (``python -m argse.stages import``) are keyed by that name and the split
  stage's content alone;
- ``gate``: the gating settings, the content of each mixed expert, in order, and for a selective objective
  the test prior it trains under;
- ``evaluation``: the evaluate settings, the gate's part of ``tune`` and the content of each evaluated source.

Keys hold contents, not ids, of what they read: an upstream stage rebuilt on purpose gives every stage
downstream a new id, and an old gate or rule set is never found for a retrained expert.
"""

from __future__ import annotations

from functools import cached_property

from argse.config.loading import PATH_KEYS
from argse.config.recipe_layers import load_recipe
from argse.config.sections import RunConfig
from argse.core.errors import ArgseError
from argse.experts.base import get_expert, list_experts
from argse.stages.store import Key, Stage, Store
from argse.training.schedule import trained_by

GATE = "gating"  # the source name of the gate's mixture
TRAIN_EXPERTS, TRAIN_GATING, EVALUATE = (f"python -m argse.{c}" for c in ("train_experts", "train_gating", "evaluate"))


GROUP_KEYS = ("tail_max_count", "many_min_count", "few_max_count")  # groups: no part of the split manifest


def data_settings(cfg: RunConfig, groups: bool = True) -> dict:
    """The data config without its paths (argse.config.loading.PATH_KEYS: ``data.root``, a section's ``cache_dir``), and
    without the group thresholds unless ``groups``."""
    data = cfg.data.model_dump()
    if not groups:
        data = {k: v for k, v in data.items() if k not in GROUP_KEYS}
    for dotted in PATH_KEYS:
        parts = dotted.split(".")
        if parts[0] == "data" and len(parts) == 2:
            data.pop(parts[1], None)
        elif parts[0] == "data" and len(parts) == 3 and isinstance(data["sections"].get(parts[1]), dict):
            data["sections"][parts[1]].pop(parts[2], None)
    return data


class RunStages:
    """The stages of one run config: their keys, and the published stages found for them."""

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg
        self.store = Store(cfg.out_dir, cfg.ckpt_dir)
        self._experts: dict[str, Stage] = {}

    def base(self) -> dict:
        return {"data": data_settings(self.cfg), "seed": self.cfg.seed}

    # ---------------------------------------------------------------- splits
    @cached_property
    def splits_key(self) -> Key:
        return Key("splits", "splits", {"data": data_settings(self.cfg, groups=False), "seed": self.cfg.seed})

    def splits(self) -> Stage:
        return self.store.require(self.splits_key, "split manifest", f"{TRAIN_EXPERTS} (any expert)")

    # ---------------------------------------------------------------- experts
    def expert_key(self, name: str, splits: Stage | None = None) -> Key:
        """The key of expert ``name``; the experts it builds on must be published (found first)."""
        splits = splits or self.splits()
        if name not in list_experts():  # logits imported from elsewhere: no recipe of argse made them
            return Key("expert", name, {"imported": True, "splits": splits.content})
        cls = get_expert(name)
        recipe = load_recipe(cls, self.cfg)
        upstream = {n: self.expert(n).content for n in cls.requires(recipe) if n != name}
        inputs = self.base() | {"recipe": trained_by(recipe), "model": self.cfg.model.model_dump(), "splits": splits.content,
                                "from": upstream}  # fmt: skip
        return Key("expert", name, inputs)

    def expert(self, name: str) -> Stage:
        if name not in self._experts:
            key = self.expert_key(name)
            if name not in list_experts() and self.store.find(key) is None:
                raise ArgseError(
                    f"'{name}' is no registered expert (available: {', '.join(list_experts())}) and this run has no "
                    f"logits imported under that name (python -m argse.stages import)"
                )
            self._experts[name] = self.store.require(key, f"expert '{name}'", f"{TRAIN_EXPERTS} --experts {name}")
        return self._experts[name]

    def forget(self, name: str) -> None:
        """Drop a cached expert stage (it was just built)."""
        self._experts.pop(name, None)

    # ---------------------------------------------------------------- gate
    def gate_key(self, experts: list[str] | None = None) -> Key:
        names = experts or self.cfg.experts
        if GATE in names:
            raise ArgseError("the gate mixes experts; remove 'gating' from its experts")
        cfg = self.cfg
        inputs = self.base() | {
            "gating": cfg.gating.model_dump(),
            "experts": [[n, self.expert(n).content] for n in names],
        }
        if cfg.gating.objective.startswith("selective_"):  # the one gate trained under evaluate's test prior
            inputs["test_prior"] = cfg.evaluate.test_prior
        return Key("gate", "gate", inputs)

    def gate(self) -> Stage:
        return self.store.require(self.gate_key(), "gate over its experts", TRAIN_GATING)

    def has_gate(self) -> bool:
        try:
            return self.store.find(self.gate_key()) is not None
        except ArgseError:  # an expert is missing: no gate can be current
            return False

    def source(self, name: str) -> Stage:
        """An evaluated source: the gate's stage (its mixture) for 'gating', else the expert's."""
        return self.gate() if name == GATE else self.expert(name)

    # ---------------------------------------------------------------- evaluation
    def default_sources(self) -> list[str]:
        """``evaluate.sources``, else the config's experts and, when this config has a gate, 'gating'."""
        if self.cfg.evaluate.sources:
            return list(self.cfg.evaluate.sources)
        return list(self.cfg.experts) + ([GATE] if self.has_gate() else [])

    def evaluation_key(self, sources: list[str]) -> Key:
        cfg = self.cfg
        settings = {k: v for k, v in cfg.evaluate.model_dump().items() if k != "sources"}
        inputs = self.base() | {"evaluate": settings, "tune_fraction": cfg.gating.tune_fraction,
                                "sources": [[s, self.source(s).content] for s in sources]}  # fmt: skip
        return Key("evaluation", "evaluation", inputs)

    def evaluation(self, source: str | None = None) -> Stage:
        """The evaluation of the default sources; else (a partial ``evaluate --sources``) the latest published
        evaluation whose every source is current under this config and which holds ``source``."""
        default = self.default_sources()
        try:
            found = self.store.find(self.evaluation_key(default))
        except ArgseError:
            found = None
        if found is not None and (source is None or source in default):
            return found
        for stage in reversed(self.store.stages()):
            if stage.record.kind != "evaluation":
                continue
            names = [s for s, _ in stage.record.inputs.get("sources", [])]
            if source is not None and source not in names:
                continue
            try:
                if self.evaluation_key(names).id == stage.record.id:
                    return stage
            except ArgseError:
                continue
        others = sum(s.record.kind == "evaluation" for s in self.store.stages())
        hint = (f" (this run has {others} evaluation(s) made under other evaluate settings, e.g. evaluate --methods; "
                f"give this command the same, as --set evaluate.methods=[...])" if others else "")  # fmt: skip
        if source is None:
            key = self.evaluation_key(default)
            raise ArgseError(f"this config has no evaluation yet (no {self.store.root / key.folder}); make it with "
                             f"{EVALUATE}{hint}")  # fmt: skip
        raise ArgseError(
            f"this config has no evaluation of '{source}' yet; make it with {EVALUATE} --sources {source}{hint}"
        )
