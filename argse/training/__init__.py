"""The training core shared by every expert, one job per module.

recipe.py (TrainRecipe, LR schedule), samplers.py (the sampler registry), augment.py (on-device
crop/flip/normalise), batches.py (training and prediction batches), checkpoints.py (the
checkpoint format), device.py (device and autocast), loop.py (TrainTask and fit).
"""

from argse.training.augment import PAD, CropFlip, Normalize
from argse.training.batches import LoaderBatches, TensorBatches, eval_batches, outputs_of
from argse.training.checkpoints import (
    CHECKPOINT_FORMAT,
    LiveTraining,
    load_checkpoint,
    load_module_weights,
    restore_training_state,
    save_training_state,
    save_weights,
)
from argse.training.device import autocast, resolve_device
from argse.training.loop import TrainTask, fit, make_progress
from argse.training.samplers import epoch_order, get_sampler, list_samplers, register_sampler
from argse.training.schedule import ExpertRecipe, TrainRecipe, lr_factor, trained_by

__all__ = [
    "CHECKPOINT_FORMAT",
    "PAD",
    "CropFlip",
    "ExpertRecipe",
    "LiveTraining",
    "LoaderBatches",
    "Normalize",
    "TensorBatches",
    "TrainRecipe",
    "TrainTask",
    "autocast",
    "epoch_order",
    "eval_batches",
    "fit",
    "get_sampler",
    "list_samplers",
    "load_checkpoint",
    "load_module_weights",
    "lr_factor",
    "trained_by",
    "make_progress",
    "outputs_of",
    "register_sampler",
    "resolve_device",
    "restore_training_state",
    "save_training_state",
    "save_weights",
]
