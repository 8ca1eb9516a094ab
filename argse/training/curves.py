"""An expert's training curves as a PNG beside its checkpoints."""

from __future__ import annotations

from pathlib import Path

from argse.core.figures import pyplot, save_png
from argse.training.schedule import TrainRecipe, lr_factor

MAX_LR_POINTS = 2000  # the schedule drawn at this many steps at most: the warm-up still shows at 200 epochs


def lr_per_step(recipe: TrainRecipe, steps_per_epoch: int) -> tuple[list[float], list[float]]:
    """The learning rate the schedule gives at each optimiser step (every few steps on long runs), against the
    epoch as a fraction: a warm-up of a few epochs shows, which a value per epoch end would hide."""
    total = recipe.epochs * steps_per_epoch
    steps = range(0, total, max(1, total // MAX_LR_POINTS))
    return [s / steps_per_epoch for s in steps], [recipe.lr * lr_factor(s, steps_per_epoch, recipe) for s in steps]


def training_curves(history: list[dict], path: Path, title: str, kept: dict | None = None,
                    schedule: tuple[list[float], list[float]] | None = None) -> Path | None:  # fmt: skip
    """metrics.jsonl's records drawn in three panels: training and validation loss per epoch; the learning rate
    per step (``schedule``, from :func:`lr_per_step`; else the value at each epoch's end) on its own axis; and
    validation accuracy (balanced, overall, head and tail) with the kept epoch marked. None when no epoch was
    trained."""
    if not history:
        return None
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    epochs = [r["epoch"] for r in history]
    fig, (loss_ax, lr_ax, acc_ax) = plt.subplots(1, 3, figsize=(13, 3.6))
    loss_ax.plot(epochs, [r["train_loss"] for r in history], "-o", markersize=3, label="training loss")
    if "loss" in history[0]["val"]:
        loss_ax.plot(epochs, [r["val"]["loss"] for r in history], "-o", markersize=3, label="validation loss (CE)")
    loss_ax.set(xlabel="epoch", ylabel="loss (log scale)", title="loss", yscale="log")
    loss_ax.legend(fontsize=7)
    at, lr = schedule or ([e - 1 for e in epochs], [r["lr"] for r in history])
    lr_ax.plot(at, lr, "-", color="0.3", linewidth=1)
    lr_ax.set(xlabel="epoch", ylabel="learning rate", title="learning rate" + (" per step" if schedule else ""))
    for i, key in enumerate(k for k in ("balanced_acc", "acc", "head", "tail") if k in history[0]["val"]):
        acc_ax.plot(epochs, [r["val"][key] for r in history], "-o" if i == 0 else "-", markersize=3, label=key)
    # the epoch fit kept: given, or the best (the first of equals, as fit keeps it)
    best = kept or max(history, key=lambda r: r["val"]["balanced_acc"])
    label = f"kept: epoch {best['epoch']} (balanced_acc {best['val']['balanced_acc']:.3f})"
    acc_ax.axvline(best["epoch"], color="k", alpha=0.3, label=label)
    acc_ax.set(xlabel="epoch", ylabel="accuracy on val", title="validation")
    acc_ax.legend(fontsize=7)
    for ax in (loss_ax, lr_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(left=0.075, right=0.98, bottom=0.14, top=0.84, wspace=0.3)  # fixed: tight_layout costs a draw
    return save_png(fig, path)
