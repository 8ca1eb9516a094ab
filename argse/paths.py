"""Every path of a run, derived in one place from its output and checkpoint folders.

The README's outputs table, as code: ``RunPaths(cfg.out_dir, cfg.ckpt_dir)`` (or ``cfg.paths``)
names each file a command writes or reads, so no module spells a run's layout itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SPLIT_FILES = ("val", "tune", "test")


@dataclass(frozen=True)
class RunPaths:
    out: Path  # outputs/NAME
    ckpt: Path  # checkpoints/NAME

    # ---- outputs/NAME
    @property
    def manifest(self) -> Path:
        return self.out / "splits.json"

    @property
    def config(self) -> Path:
        return self.out / "config.yaml"

    @property
    def preprocess(self) -> Path:
        return self.out / "preprocess.json"

    @property
    def lock(self) -> Path:
        return self.out / ".lock"

    @property
    def logs(self) -> Path:
        return self.out / "logs"

    @property
    def logits_root(self) -> Path:
        return self.out / "logits"

    def logits_dir(self, source: str) -> Path:
        return self.logits_root / source

    def logits(self, source: str, split: str) -> Path:
        return self.logits_dir(source) / f"{split}.safetensors"

    def export_config(self, source: str) -> Path:
        return self.logits_dir(source) / "config.yaml"

    @property
    def gating(self) -> Path:
        return self.out / "gating"

    @property
    def gate_json(self) -> Path:
        return self.gating / "gate.json"

    @property
    def gate_weights(self) -> Path:
        return self.gating / "gate.safetensors"

    @property
    def evaluation(self) -> Path:
        return self.out / "evaluation"

    @property
    def report(self) -> Path:
        return self.evaluation / "report.json"

    @property
    def rules(self) -> Path:
        return self.evaluation / "rules.json"

    @property
    def curves_csv(self) -> Path:
        return self.evaluation / "rc_curves.csv"

    @property
    def curves_png(self) -> Path:
        return self.evaluation / "rc_curves.png"

    @property
    def summary(self) -> Path:
        return self.evaluation / "summary.md"

    # ---- checkpoints/NAME
    def expert_ckpt(self, expert: str) -> Path:
        return self.ckpt / expert

    def best(self, expert: str) -> Path:
        return self.expert_ckpt(expert) / "best.safetensors"

    def last(self, expert: str) -> Path:
        return self.expert_ckpt(expert) / "last.safetensors"
