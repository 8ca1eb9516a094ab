"""Every path of a run, derived in one place from its output and checkpoint folders.

The README's outputs table, as code: ``RunPaths(cfg.out_dir, cfg.ckpt_dir)`` (or ``cfg.paths``)
names each file a command writes or reads, so no module spells a run's layout itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# Files inside one folder: a run's outputs folder, or one training stage's checkpoint folder
# (checkpoints/NAME/<expert>/, or its stage1/ and stage2/ for a multi-stage expert).


def manifest_file(out: Path) -> Path:
    return Path(out) / "splits.json"


def lock_file(out: Path) -> Path:
    return Path(out) / ".lock"


def logits_root(out: Path) -> Path:
    return Path(out) / "logits"


def logits_file(out: Path, source: str, split: str) -> Path:
    return logits_root(out) / source / f"{split}.safetensors"


def best_file(folder: Path) -> Path:
    """The kept epoch's weights: the best by val balanced accuracy, or the last (recipe ``checkpoint``)."""
    return Path(folder) / "best.safetensors"


def last_file(folder: Path) -> Path:
    """The full training state after the last finished epoch (--resume)."""
    return Path(folder) / "last.safetensors"


def metrics_file(folder: Path) -> Path:
    return Path(folder) / "metrics.jsonl"


def training_curves_file(folder: Path) -> Path:
    """metrics.jsonl drawn: loss and validation accuracy per epoch."""
    return Path(folder) / "training_curves.png"


def tensorboard_dir(folder: Path) -> Path:
    """TensorBoard event files of a training stage (runtime.tensorboard)."""
    return Path(folder) / "tensorboard"


def config_file(folder: Path) -> Path:
    """The config a folder's files were made with (a run, an export, a checkpoint folder)."""
    return Path(folder) / "config.yaml"


@dataclass(frozen=True)
class RunPaths:
    out: Path  # outputs/NAME
    ckpt: Path  # checkpoints/NAME

    # ---- outputs/NAME
    @property
    def manifest(self) -> Path:
        return manifest_file(self.out)

    @property
    def config(self) -> Path:
        return config_file(self.out)

    @property
    def preprocess(self) -> Path:
        return self.out / "preprocess.json"

    @property
    def lock(self) -> Path:
        return lock_file(self.out)

    @property
    def logs(self) -> Path:
        return self.out / "logs"

    @property
    def logits_root(self) -> Path:
        return logits_root(self.out)

    def logits_dir(self, source: str) -> Path:
        return self.logits_root / source

    def logits(self, source: str, split: str) -> Path:
        return logits_file(self.out, source, split)

    def export_config(self, source: str) -> Path:
        return config_file(self.logits_dir(source))

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

    @property
    def predictions(self) -> Path:
        """Where argse.predict writes by default (one file per input)."""
        return self.out / "predictions"

    # ---- checkpoints/NAME
    def expert_ckpt(self, expert: str) -> Path:
        return self.ckpt / expert

    def stage_ckpt(self, expert: str, stage: str) -> Path:
        """A multi-stage expert's checkpoint folder of one stage (decoupling: stage1, stage2)."""
        return self.expert_ckpt(expert) / stage

    def best(self, expert: str) -> Path:
        return best_file(self.expert_ckpt(expert))

    def last(self, expert: str) -> Path:
        return last_file(self.expert_ckpt(expert))


# ---- where a config's relative paths start, and where the built-in recipes are

# The built-in recipes (experts/*.yaml, experts/presets/) sit beside the package: a checkout or an
# editable install (pip install -e ., what make does) finds them from any folder.
BUILTIN_RECIPES = Path(__file__).resolve().parent.parent / "experts"


def config_base(config_file: str | Path | None) -> Path:
    """The folder a config file's relative paths (and the path defaults) are resolved against: the file's
    folder, or its parent when that folder is named ``configs`` (a project's ``configs/``, so
    ``configs/x.yaml`` writes ``outputs/`` beside ``configs/``); with no file, the current folder."""
    if config_file is None:
        return Path.cwd()
    folder = Path(config_file).resolve().parent
    return folder.parent if folder.name == "configs" else folder


def resolve(path: str, base: Path) -> str:
    """``path`` as written, made absolute against ``base`` when relative (``~`` expanded first)."""
    p = Path(path).expanduser()
    return str(p if p.is_absolute() else base / p)
