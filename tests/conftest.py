"""Shared fixtures: a tiny synthetic run that trains in well under a second per epoch."""

from __future__ import annotations

from pathlib import Path

import pytest

from argse.config.loading import load_run_config
from tests.tiny_run import REPO, TINY_RUN

pytest.register_assert_rewrite("tests.fault_harness")  # its assert_* helpers report like test asserts

SHARED_CIFAR10 = REPO.parent / "shared" / "datasets" / "cifar10-jpeg.tar.gz"

TINY_SCHEDULE = {"epochs": 2, "batch_size": 16, "warmup_epochs": 1, "milestones": [1], "gamma": 0.1, "lr": 0.05}


def tiny_overrides(tmp_path: Path, **extra: str) -> list[str]:
    sets = TINY_RUN | {
        "output_dir": str(tmp_path / "outputs"),
        "checkpoint_dir": str(tmp_path / "checkpoints"),
        "runtime.eval_batch_size": "32",
    }
    for name in ("ce", "logit_adjust", "balanced_softmax"):
        for k, v in TINY_SCHEDULE.items():
            sets[f"recipes.{name}.{k}"] = str(v)
    for stage in ("stage1", "stage2"):
        for k, v in TINY_SCHEDULE.items():
            sets[f"recipes.decoupling.{stage}.{k}"] = str(v)
    sets.update(extra)
    return [f"{k}={v}" for k, v in sets.items()]


@pytest.fixture
def tiny(tmp_path):
    """Overrides (for --set) of a tiny run under tmp_path."""
    return tiny_overrides(tmp_path)


@pytest.fixture
def tiny_cfg(tiny):
    return load_run_config(None, tiny)
