"""Named random streams: every draw of randomness in argse takes its seed from here.

Each consumer has its own stream, derived from one base seed, so a new draw in one place never
shifts the numbers of another, and the offsets live in one table instead of ``seed + 3`` in
the code that uses them.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading

import torch

STREAMS: dict[str, int] = {
    "splits": 0,  # the held-out splits of the manifest (manifest.make_manifest)
    "init": 0,  # a model's initial weights
    "sampler": 0,  # the order of the training samples of each epoch
    "augment": 1,  # random crops and flips
    "torch": 2,  # torch's global generator while training (for plugins that draw from it)
    "dropout": 5,  # the dropout masks of an expert's network (models.SeededDropout)
    "classifier_reset": 3,  # decoupling: the re-initialised classifier of stage 2
    "feature_views": 4,  # decoupling: the augmented views of the feature cache
    "gate": 0,  # the gating network's initial weights and batch order
    "tune_parts": 0,  # which samples of tune train the gate and which fit the rejectors
}


def seed(base: int, stream: str) -> int:
    """The seed of ``stream`` under the base seed ``base``."""
    try:
        return base + STREAMS[stream]
    except KeyError:
        raise KeyError(f"unknown random stream '{stream}'; add it to argse.core.seeds.STREAMS") from None


def generator(base: int, stream: str, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch generator on ``device`` seeded for ``stream``."""
    return torch.Generator(device).manual_seed(seed(base, stream))


GLOBAL_LOCK = threading.RLock()
"""Held while a thread seeds and draws from torch's process-wide generators, or captures a CUDA graph
(which registers the default CUDA generator): experts trained side by side in one process
(``--team``) would otherwise reseed them under each other."""


def seed_global(base: int, stream: str) -> None:
    """Seed torch's process-wide generators for ``stream``."""
    with GLOBAL_LOCK:
        torch.manual_seed(seed(base, stream))


@contextlib.contextmanager
def global_stream(base: int, stream: str):
    """torch's process-wide generators seeded for ``stream``, for this thread alone until the block ends."""
    with GLOBAL_LOCK:
        seed_global(base, stream)
        yield


def expert_seed(run_seed: int, expert: str) -> int:
    """An expert's own base seed, derived from the run seed and its name.

    Two experts of one run never share initial weights, data order or augmentation (two
    experts with the same loss would otherwise be the same model), and the same config
    always gives the same seed: sha256, unlike ``hash``, does not change between processes.
    """
    digest = hashlib.sha256(f"{run_seed}/{expert}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


MAX_SEED = 2**63 - 1 - max(STREAMS.values())
"""torch seeds are 64-bit; the largest base seed that leaves room for every stream's offset."""


def check(seed: int | None) -> None:
    """A recipe's ``seed``: None (derived) or a base seed every stream can use; ValueError otherwise."""
    if seed is not None and not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be between 0 and {MAX_SEED}, got {seed}")
