"""An expert's training curves as a PNG beside its checkpoints."""

from __future__ import annotations

from pathlib import Path

from argse.core.figures import pyplot, save_png

# ---------------------------------------------------------------- training curves


def training_curves(history: list[dict], path: Path, title: str, kept: dict | None = None) -> Path | None:
    """metrics.jsonl's records drawn: training loss and learning rate, and validation accuracy per epoch
    (balanced, overall, head and tail), the best epoch (the one kept) marked. None when no epoch was trained."""
    if not history:
        return None
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    epochs = [r["epoch"] for r in history]
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 3.6))
    loss_ax.plot(epochs, [r["train_loss"] for r in history], "-o", markersize=3, color="C0", label="training loss")
    loss_ax.set(xlabel="epoch", ylabel="training loss", title="training")
    lr_ax = loss_ax.twinx()
    lr_ax.plot(epochs, [r["lr"] for r in history], "--", color="0.5", label="learning rate (right axis)")
    lr_ax.set_ylabel("learning rate")
    lines = loss_ax.get_lines() + lr_ax.get_lines()
    loss_ax.legend(lines, [ln.get_label() for ln in lines], fontsize=7)
    for i, key in enumerate(k for k in ("balanced_acc", "acc", "head", "tail") if k in history[0]["val"]):
        acc_ax.plot(epochs, [r["val"][key] for r in history], "-o" if i == 0 else "-", markersize=3, label=key)
    # the epoch fit kept: given, or the best (the first of equals, as fit keeps it)
    best = kept or max(history, key=lambda r: r["val"]["balanced_acc"])
    kept = f"kept: epoch {best['epoch']} (balanced_acc {best['val']['balanced_acc']:.3f})"
    acc_ax.axvline(best["epoch"], color="k", alpha=0.3, label=kept)
    acc_ax.set(xlabel="epoch", ylabel="accuracy on val", title="validation")
    acc_ax.legend(fontsize=7)
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(left=0.07, right=0.97, bottom=0.14, top=0.84, wspace=0.45)  # fixed: tight_layout costs a draw
    return save_png(fig, path)
