"""The static-shape step (runtime.cuda_graphs) run eagerly on the CPU: the same functions a CUDA graph
captures must train exactly like the dynamic loop, LR schedule and divergence tracking included."""

import pytest
import torch

from argse.config.loading import load_run_config
from argse.config.schema import changed
from argse.core.errors import ArgseError
from argse.data.long_tail import prepare_data
from argse.experts import ExpertContext, build_expert
from argse.training import fit, load_checkpoint, lr_factor
from argse.training import static_step as static_mod

CPU = torch.device("cpu")


def _train(tiny, tmp_path, static: bool, sets=(), loss=None, **recipe):
    """Train the tiny ce expert's model with fit(); returns (recipe, last-checkpoint tensors, fit's result)."""
    cfg = load_run_config(None, tiny + list(sets))
    expert = build_expert("ce", ExpertContext(cfg, prepare_data(cfg), CPU, {"ce": cfg.ckpt_dir / "ce"}))
    model = expert.model = expert.new_model(expert.recipe.dropout)  # val_report predicts with expert.model
    task = expert.image_task("ce", model, **({"loss_fn": loss} if loss else {}))
    r = changed(expert.recipe, **recipe)
    ckpt = tmp_path / ("static" if static else "dynamic")
    best = fit(task, r, ckpt, seed=cfg.seed, resume=False, device=CPU, runtime=cfg.runtime, static_shapes=static)
    return r, load_checkpoint(ckpt / "last.safetensors")[0], best, len(task.data.labels)


@pytest.mark.parametrize(
    "sets",
    [
        (),  # instance sampler, crop/flip
        ("recipes.ce.augment=false", "recipes.ce.sampler=balanced", "recipes.ce.dropout=0.3"),
    ],
)
def test_static_step_trains_bitwise_like_the_dynamic_loop(tiny, tmp_path, sets):
    recipe, a, best_a, n = _train(tiny, tmp_path, False, sets)
    _, b, best_b, _ = _train(tiny, tmp_path, True, sets)
    assert n % recipe.batch_size, "the run must end its epochs with a short batch (the second graph)"
    # Weights, BatchNorm statistics, momentum buffers and every RNG state: all bit for bit.
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    timing = {"seconds", "train_seconds"}
    assert {k: v for k, v in best_a.items() if k not in timing} == {k: v for k, v in best_b.items() if k not in timing}


def test_static_step_reads_the_schedule_from_the_lr_tensor(tiny, tmp_path, monkeypatch):
    seen = []
    body = static_mod.StaticStep.body

    def recording_body(self):
        seen.append(self.t.lr.clone())
        body(self)

    monkeypatch.setattr(static_mod.StaticStep, "body", recording_body)
    recipe, _, _, n = _train(tiny, tmp_path, True, epochs=3, milestones=[2])
    steps = -(-n // recipe.batch_size)
    want = [torch.tensor(recipe.lr * lr_factor(s, steps, recipe), dtype=torch.float32) for s in range(3 * steps)]
    assert len(seen) == len(want) and all(torch.equal(a, b) for a, b in zip(seen, want, strict=True))
    assert len({float(x) for x in want}) > 3  # warm-up and a milestone: the value really changes


def test_static_step_stops_on_a_nan_loss_with_epoch_and_step(tiny, tmp_path):
    calls = {"n": 0}

    def loss_goes_nan(logits, y):
        calls["n"] += 1
        loss = torch.nn.functional.cross_entropy(logits, y)
        return loss * float("nan") if calls["n"] > 7 else loss  # 5 steps per epoch: epoch 2, step 3

    with pytest.raises(ArgseError, match=r"NaN or infinite at epoch 2, step 3; the last good checkpoint .* is kept"):
        _train(tiny, tmp_path, True, ("recipes.ce.epochs=3",), loss=loss_goes_nan)


def test_cuda_graphs_on_the_cpu_is_refused_in_one_sentence(tiny, tmp_path):
    with pytest.raises(ArgseError, match=r"^runtime.cuda_graphs=true needs a CUDA device but this run is on cpu; set"):
        cfg = load_run_config(None, tiny + ["runtime.cuda_graphs=true"])
        expert = build_expert("ce", ExpertContext(cfg, prepare_data(cfg), CPU, {"ce": cfg.ckpt_dir / "ce"}))
        expert.train()


def test_generator_registration_is_refused_on_a_torch_without_it():
    class OldGraph:  # a CUDAGraph of a torch before register_generator_state
        pass

    with pytest.raises(ArgseError, match=r"cannot capture a random augmentation in a CUDA graph"):
        static_mod.register_generator(OldGraph(), torch.Generator())
