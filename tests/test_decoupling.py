import pytest
import torch
import torch.nn.functional as F

from argse import training
from argse.config.loading import load_run_config
from argse.core import storage
from argse.core.errors import ArgseError
from argse.data.long_tail import prepare_data
from argse.experts import ExpertContext, Exported, build_expert
from argse.experts.decoupling import LWSClassifier, tau_normalized
from argse.training import load_checkpoint


def _expert(overrides, name="decoupling", exported=None):
    """Expert ``name`` training in checkpoint_dir/<name> (a second one there continues the first's training)."""
    cfg = load_run_config(None, overrides)
    folders = {name: cfg.ckpt_dir / name}
    return build_expert(name, ExpertContext(cfg, prepare_data(cfg), torch.device("cpu"), folders, exported or {}))


def _stage1_weights(expert):
    tensors, _ = load_checkpoint(expert.ckpt_dir / "stage1" / "best.safetensors")
    return {k[len("model.") :]: v for k, v in tensors.items()}


def test_frozen_bn_keeps_backbone_bit_identical_and_retrains_reset_classifier(tiny, monkeypatch):
    expert = _expert(tiny)
    starts = []
    original = expert.new_classifier

    def record(fc):
        new = original(fc)
        starts.append((fc.weight.detach().clone(), new.weight.detach().clone()))
        return new

    monkeypatch.setattr(expert, "new_classifier", record)
    expert.train()
    stage1 = _stage1_weights(expert)
    final = expert.model.state_dict()
    backbone = [k for k in final if k.startswith("backbone.")]
    assert any("running_mean" in k for k in backbone)
    assert all(torch.equal(final[k], stage1[k]) for k in backbone)
    ((old, start),) = starts
    assert torch.equal(old, stage1["fc.weight"]) and not torch.equal(start, old)  # reset
    assert not torch.equal(final["fc.weight"], start)  # trained


def test_stage2_draws_one_balanced_sample_per_training_image(tiny, monkeypatch):
    draws = []
    original = training.epoch_order

    def spy(labels, sampler, generator, num_classes, draws_=None):
        out = original(labels, sampler, generator, num_classes, draws_)
        draws.append((sampler, len(out)))
        return out

    monkeypatch.setattr("argse.training.loop.epoch_order", spy)
    expert = _expert(tiny)
    expert.train()
    n = len(expert.ctx.data.train.labels)
    assert draws[-1] == ("balanced", n) and draws[0] == ("instance", n)


def test_cached_and_uncached_stage2_agree(tiny, tmp_path):
    cached = _expert(tiny + [f"checkpoint_dir={tmp_path / 'a'}"])
    cached.train()
    plain = _expert(tiny + [f"checkpoint_dir={tmp_path / 'b'}", "recipes.decoupling.feature_cache=false"])
    plain.train()
    assert not plain.cached and cached.cached
    for key in ("weight", "bias"):
        a, b = getattr(cached.model.fc, key), getattr(plain.model.fc, key)
        assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()


def test_tau_zero_and_unit_lws_scales_equal_the_stage1_classifier():
    fc = torch.nn.Linear(6, 4)
    x = torch.randn(5, 6)
    assert torch.equal(tau_normalized(fc, 0.0, bias="scale")(x), fc(x))
    assert torch.allclose(tau_normalized(fc, 0.0, bias="drop")(x), fc(x) - fc.bias)  # Kang et al. drop the bias
    assert torch.equal(LWSClassifier(fc)(x), fc(x))
    # tau = 1: every class weight has unit norm, and a scaled bias is divided by the same norm
    t1 = tau_normalized(fc, 1.0, bias="scale")
    assert torch.allclose(t1.weight.norm(dim=1), torch.ones(4))
    assert torch.allclose(t1.bias, fc.bias / fc.weight.norm(dim=1))


@pytest.mark.parametrize("classifier", ["tau_norm", "lws"])
def test_tau_norm_and_lws_keep_stage1_weights(tiny, classifier):
    expert = _expert(tiny + [f"recipes.decoupling.classifier={classifier}"])
    expert.train()
    stage1 = _stage1_weights(expert)
    final = expert.model.state_dict()
    if classifier == "lws":
        assert torch.equal(final["fc.fc.weight"], stage1["fc.weight"]) and not torch.equal(
            final["fc.scales"], torch.ones(4)
        )
    else:
        assert expert.tau in expert.recipe.tau_grid
    # The fitted temperature lowers (never raises) the NLL of the val logits it was fitted on.
    val = expert.ctx.data.held_out["val"]
    logits = expert.predict_split(val).double()
    t = expert.calibrate()
    assert F.cross_entropy(logits / t, val.labels) <= F.cross_entropy(logits, val.labels) + 1e-9


def test_rebalanced_bn_updates_running_stats_only(tiny):
    expert = _expert(tiny + ["recipes.decoupling.bn=rebalanced"])
    expert.train()
    stage1, final = _stage1_weights(expert), expert.model.state_dict()
    assert not expert.cached
    params = {k for k, _ in expert.model.backbone.named_parameters()}
    assert all(torch.equal(final[f"backbone.{k}"], stage1[f"backbone.{k}"]) for k in params)
    assert not torch.equal(final["backbone.1.running_mean"], stage1["backbone.1.running_mean"])


def test_stage1_from_ce_reuses_and_checks_the_checkpoint(tiny, tmp_path):
    ce = _expert(tiny, name="ce")
    ce.train()
    finished = {"ce": Exported("ce", ce.ckpt_dir, ce.ckpt_dir / "best.safetensors")}
    reuse = _expert(tiny + ["recipes.decoupling.stage1_from=ce"], exported=finished)
    reuse.stage1()
    ce_weights = {k[len("model.") :]: v for k, v in load_checkpoint(ce.ckpt_dir / "best.safetensors")[0].items()}
    assert all(torch.equal(v, ce_weights[k]) for k, v in reuse.model.state_dict().items())
    assert not (reuse.ckpt_dir / "stage1").exists()  # stage 1 was not trained again

    other = _expert(tiny + ["recipes.decoupling.stage1_from=ce", "model.width=8"], exported=finished)
    with pytest.raises(ArgseError, match=r"cannot reuse .*ce/best.safetensors as stage 1: its 'model' differs"):
        other.stage1()


def test_interrupted_stage2_continues_to_the_same_classifier(tiny, tmp_path, monkeypatch):
    """Training again in the folder of an interrupted training continues it, as the same command run again does."""
    sets = tiny + ["recipes.decoupling.stage2.epochs=3"]
    full = _expert(sets + [f"checkpoint_dir={tmp_path / 'a'}"])
    full.train()
    original = storage.write_text
    seen = {"n": 0}

    def interrupt(path, text):
        original(path, text)
        if path.name == "metrics.jsonl" and path.parent.name == "stage2":
            seen["n"] += 1
            if seen["n"] == 1:
                raise KeyboardInterrupt

    monkeypatch.setattr(storage, "write_text", interrupt)
    with pytest.raises(KeyboardInterrupt):
        _expert(sets + [f"checkpoint_dir={tmp_path / 'b'}"]).train()
    monkeypatch.setattr(storage, "write_text", original)
    resumed = _expert(sets + [f"checkpoint_dir={tmp_path / 'b'}"])
    resumed.train()
    assert torch.equal(resumed.model.fc.weight, full.model.fc.weight)


def test_augmented_cache_holds_views_and_epochs_draw_one_per_image(tiny, monkeypatch):
    expert = _expert(tiny + ["recipes.decoupling.stage2.augment=true", "recipes.decoupling.cache_views=3"])
    seen = {}
    original = training.fit

    def spy(task, recipe, ckpt_dir, **kw):
        if ckpt_dir.name == "stage2":
            seen.update(inputs=len(task.data.inputs), epoch_size=task.epoch_size, augment=recipe.augment)
        return original(task, recipe, ckpt_dir, **kw)

    monkeypatch.setattr("argse.experts.base.fit", spy)
    expert.train()
    n = len(expert.ctx.data.train.labels)
    assert seen == {"inputs": 3 * n, "epoch_size": n, "augment": False}  # views are fixed in the cache
    assert expert.cached


def test_without_reset_stage2_starts_from_the_stage1_classifier(tiny, monkeypatch):
    expert = _expert(tiny + ["recipes.decoupling.reset_classifier=false"])
    starts = []
    original = expert.new_classifier
    monkeypatch.setattr(expert, "new_classifier", lambda fc: starts.append(fc.weight.detach().clone()) or original(fc))
    expert.train()
    assert torch.equal(starts[0], _stage1_weights(expert)["fc.weight"])
    assert not torch.equal(expert.model.fc.weight, starts[0])
