import importlib.metadata
import json
import shutil
import sys

import pytest
import torch

import argse.core.registry
from argse import train_experts
from argse.config.loading import load_run_config
from argse.config.schema import changed, parse
from argse.core import seeds, storage
from argse.core.errors import ArgseError
from argse.data.long_tail import prepare_data
from argse.experts import ExpertContext, build_expert, get_expert, load_plugins, load_recipe
from argse.stages.run import RunStages
from argse.training import (
    CropFlip,
    TensorBatches,
    TrainRecipe,
    TrainTask,
    epoch_order,
    list_samplers,
    load_checkpoint,
    lr_factor,
    samplers,
)
from argse.training.checkpoints import LAST
from argse.training.models import build_model, prepare_model
from tests.conftest import tiny_overrides


def _reference_order(labels, sampler, generator, num_classes, draws=None):
    """epoch_order as it was before samplers had a registry: the built-ins must match it draw for draw."""
    n = len(labels)
    draws = draws or n
    if sampler == "instance":
        return torch.randperm(n, generator=generator)[:draws]
    counts = torch.bincount(labels, minlength=num_classes).double()
    return torch.multinomial(1.0 / counts[labels], draws, replacement=True, generator=generator)


@pytest.mark.parametrize("sampler", ["instance", "balanced"])
@pytest.mark.parametrize("draws", [None, 37])
def test_builtin_samplers_draw_the_same_indices_as_before(sampler, draws):
    labels = torch.arange(6).repeat_interleave(torch.tensor([40, 20, 9, 5, 3, 1]))
    ours, ref = torch.Generator().manual_seed(11), torch.Generator().manual_seed(11)
    for _ in range(3):  # successive epochs share one generator
        assert torch.equal(
            epoch_order(labels, sampler, ours, 7, draws), _reference_order(labels, sampler, ref, 7, draws)
        )
    assert torch.equal(ours.get_state(), ref.get_state())


def test_unknown_sampler_is_one_sentence_naming_the_choices(tiny):
    with pytest.raises(
        ArgseError, match=r"^invalid config: unknown sampler 'balnced'; available samplers: balanced, instance"
    ):
        parse(TrainRecipe, {"sampler": "balnced"})
    cfg = load_run_config(None, tiny + ["recipes.ce.sampler=balnced"])
    with pytest.raises(ArgseError, match=r"^invalid config in 'recipes\.ce': unknown sampler 'balnced'; available"):
        load_recipe(get_expert("ce"), cfg)


def test_a_sampler_registered_twice_names_both():
    with pytest.raises(
        ArgseError,
        match=r"^sampler 'balanced' is registered twice: by argse\.training\.samplers\.balanced_sampler \(.*samplers\.py\) "
        r"and by .*another_balanced .*; rename one of them$",
    ):

        @samplers.register_sampler("balanced")
        def another_balanced(labels, generator, num_classes, draws):
            return labels[:draws]


def test_plugin_sampler_trains_an_expert(tiny):
    load_plugins(["tests.plugins.sqrt_sampler"])
    from tests.plugins import sqrt_sampler

    assert "sqrt" in list_samplers()
    sqrt_sampler.CALLS.clear()
    expert = _ce(tiny + ["recipes.ce.sampler=sqrt"])
    assert expert.recipe.sampler == "sqrt"
    expert.train()
    assert sqrt_sampler.CALLS == [len(expert.ctx.data.train.labels)] * expert.recipe.epochs


def test_plugin_sampler_from_entry_point(monkeypatch):
    sys.modules.pop("tests.plugins.sqrt_sampler", None)
    samplers.SAMPLERS.unregister("sqrt")
    assert "sqrt" not in list_samplers()
    ep = importlib.metadata.EntryPoint("sqrt", "tests.plugins.sqrt_sampler", "argse.samplers")
    monkeypatch.setattr(argse.core.registry, "entry_points", lambda group: [ep] if group == "argse.samplers" else [])
    load_plugins([])
    assert "sqrt" in list_samplers()


def test_sqrt_plugin_sampler_sits_between_instance_and_balanced():
    load_plugins(["tests.plugins.sqrt_sampler"])
    counts = torch.tensor([900, 100])
    labels = torch.arange(2).repeat_interleave(counts)
    head_share = float((labels[epoch_order(labels, "sqrt", torch.Generator().manual_seed(0), 2)] == 0).double().mean())
    assert head_share == pytest.approx(0.75, abs=0.03)  # sqrt(900) / (sqrt(900) + sqrt(100))


def test_balanced_sampler_is_uniform_over_classes():
    counts = torch.tensor([1000, 300, 100, 30, 10])
    labels = torch.arange(5).repeat_interleave(counts)
    order = epoch_order(labels, "balanced", torch.Generator().manual_seed(0), 5)
    assert len(order) == len(labels)  # one draw per training image
    observed = torch.bincount(labels[order], minlength=5).double()
    expected = len(labels) / 5
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    assert chi2 < 18.47  # chi-square, 4 dof, p = 0.001
    assert torch.bincount(labels[epoch_order(labels, "instance", torch.Generator(), 5)]).tolist() == counts.tolist()


def test_crop_flip_matches_pad_then_slice():
    x = torch.randint(0, 256, (6, 3, 5, 7), dtype=torch.uint8)
    crops = CropFlip.draw(6, torch.Generator().manual_seed(3))
    out = crops.apply(x)
    g = torch.Generator().manual_seed(3)
    oy, ox = torch.randint(0, 9, (6, 1), generator=g), torch.randint(0, 9, (6, 1), generator=g)
    flip = torch.rand(6, 1, generator=g) < 0.5
    assert flip.any() and not flip.all()
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for i in range(6):
        ref = padded[i, :, oy[i, 0] : oy[i, 0] + 5, ox[i, 0] : ox[i, 0] + 7]
        assert torch.equal(out[i], ref.flip(2) if flip[i, 0] else ref)
    # A rank's shard of the global draw crops its images exactly as one process would.
    assert torch.equal(crops.take(slice(2, 5)).apply(x[2:5]), out[2:5])


def test_cosine_schedule_after_warmup():
    r = TrainRecipe(epochs=10, warmup_epochs=2, schedule="cosine")
    assert lr_factor(19, 10, r) == 1.0 and lr_factor(20, 10, r) == 1.0
    assert lr_factor(60, 10, r) == pytest.approx(0.5) and lr_factor(99, 10, r) < 0.001


def test_warmup_then_multistep():
    r = TrainRecipe(epochs=10, warmup_epochs=2, milestones=[5, 8], gamma=0.1)
    assert lr_factor(0, 10, r) == pytest.approx(1 / 20)
    assert lr_factor(19, 10, r) == 1.0 and lr_factor(49, 10, r) == 1.0
    assert lr_factor(50, 10, r) == pytest.approx(0.1) and lr_factor(85, 10, r) == pytest.approx(0.01)


def _ce(overrides):
    """ce training in checkpoint_dir/<name>/ce (a second one there continues the first's training)."""
    cfg = load_run_config(None, overrides)
    return build_expert("ce", ExpertContext(cfg, prepare_data(cfg), torch.device("cpu"), {"ce": cfg.ckpt_dir / "ce"}))


def _weights(path):
    return {k: v for k, v in load_checkpoint(path)[0].items() if k.startswith("model.")}


def _interrupt_after(epochs: int, train, monkeypatch) -> None:
    """Call ``train`` and stop it right after the checkpoint of epoch ``epochs``."""
    original = storage.write_text
    calls = {"n": 0}

    def stop_after_the_epoch(path, text):
        original(path, text)
        if path.name == "metrics.jsonl":
            calls["n"] += 1
            if calls["n"] == epochs:
                raise KeyboardInterrupt

    monkeypatch.setattr(storage, "write_text", stop_after_the_epoch)
    with pytest.raises(KeyboardInterrupt):
        train()
    monkeypatch.setattr(storage, "write_text", original)


def test_the_same_command_continues_an_interrupted_training_to_the_uninterrupted_result(tmp_path, monkeypatch, capsys):
    """train_experts run again after an interruption continues from last.safetensors of the stage's training folder
    and ends where an uninterrupted run ends."""
    sets = {
        run: tiny_overrides(tmp_path / run, **{"recipes.ce.epochs": "3", "recipes.ce.dropout": "0.2"}) for run in "ab"
    }
    argv = {run: ["--experts", "ce"] + [x for s in sets[run] for x in ("--set", s)] for run in "ab"}
    assert train_experts.main(argv["a"]) == 0

    _interrupt_after(2, lambda: train_experts.main(argv["b"]), monkeypatch)
    stages = {run: RunStages(load_run_config(None, sets[run])) for run in "ab"}
    key = stages["b"].expert_key("ce")
    folders = {run: stages[run].store.training_folder(stages[run].expert_key("ce")) for run in "ab"}
    assert folders["b"].name == key.folder and stages["b"].store.find(key) is None  # nothing published
    assert load_checkpoint(folders["b"] / LAST)[1]["epoch"] == 2
    capsys.readouterr()
    assert train_experts.main(argv["b"]) == 0
    assert f"ce: resumed from epoch 2 of 3 ({folders['b'] / LAST})" in capsys.readouterr().out.replace("\n", "")

    a, b = _weights(folders["a"] / LAST), _weights(folders["b"] / LAST)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    kept = [_weights(stages[run].expert("ce").file("model.safetensors")) for run in "ab"]
    assert all(torch.equal(kept[0][k], kept[1][k]) for k in kept[0])


def test_a_checkpoint_without_a_random_stream_is_refused_not_resumed(tmp_path, tiny, monkeypatch):
    """A file lacking one generator's state cannot continue exactly: the next training names what it lacks."""
    epochs = ["recipes.ce.epochs=3"]
    _interrupt_after(2, lambda: _ce(tiny + epochs).train(), monkeypatch)
    expert = _ce(tiny + epochs)
    last = expert.ckpt_dir / "last.safetensors"
    tensors, meta = storage.load_tensors(last, "checkpoint")
    del tensors["rng.dropout"]
    storage.save_tensors(last, tensors, meta)
    with pytest.raises(ArgseError, match=r"holds weights only, not the training state .*'rng.dropout'"):
        expert.train()


def _crafted(meta_change=None, tensor_change=None):
    def craft(tensors, meta):
        m = json.loads(meta["meta"])
        if meta_change:
            meta_change(m)
        if tensor_change:
            tensor_change(tensors)
        return tensors, {**meta, "meta": json.dumps(m)}

    return craft


@pytest.mark.parametrize(
    ("craft", "message"),
    [
        (_crafted(meta_change=lambda m: m["optim"]["param_groups"].pop()), r"its optimiser's parameter groups are not this run's"),
        (_crafted(meta_change=lambda m: m["optim"].update(param_groups="x")), r"its optimiser's parameter groups are not this run's"),
        (_crafted(meta_change=lambda m: m.update(scheduler=3)), r"its optimiser or scheduler state is missing or malformed"),
        (_crafted(tensor_change=lambda t: t.update({"rng.dropout": t["rng.dropout"].float()})), r"its random state 'rng\.dropout' is a torch\.float32 tensor"),
        (_crafted(meta_change=lambda m: m["optim"]["param_groups"][0].update(lr="fast")), r"its optimiser's 'lr' is 'fast', not a float"),
        (_crafted(meta_change=lambda m: m["optim"].update(plain_state={"0": 5})), r"its optimiser or scheduler state does not load"),
    ],
)  # fmt: skip
def test_a_crafted_checkpoint_is_checked_field_by_field_before_use(tmp_path, tiny, monkeypatch, craft, message):
    epochs = ["recipes.ce.epochs=3"]
    _interrupt_after(2, lambda: _ce(tiny + epochs).train(), monkeypatch)
    expert = _ce(tiny + epochs)
    last = expert.ckpt_dir / "last.safetensors"
    storage.save_tensors(last, *craft(*storage.load_tensors(last, "checkpoint")))
    with pytest.raises(ArgseError, match=rf"^checkpoint .*last\.safetensors cannot be continued: {message}"):
        expert.train()


def test_nan_loss_stops_with_epoch_and_step_and_keeps_checkpoint(tmp_path, tiny, monkeypatch):
    expert = _ce(tiny + ["recipes.ce.epochs=3"])
    last = expert.ckpt_dir / "last.safetensors"
    calls = {"n": 0}
    original = expert.loss

    def loss_goes_nan(logits, y):
        calls["n"] += 1
        loss = original(logits, y)
        return loss * float("nan") if calls["n"] > 7 else loss  # 5 steps per epoch: epoch 2, step 3

    monkeypatch.setattr(expert, "loss", loss_goes_nan)
    with pytest.raises(ArgseError, match=r"NaN or infinite at epoch 2, step 3; the last good checkpoint .* is kept"):
        expert.train()
    assert load_checkpoint(last)[1]["epoch"] == 1


def test_killed_checkpoint_write_leaves_previous_checkpoint(tmp_path, tiny, monkeypatch):
    sets = tiny + ["recipes.ce.epochs=2"]
    _interrupt_after(1, lambda: _ce(sets).train(), monkeypatch)
    expert = _ce(sets)
    last = expert.ckpt_dir / "last.safetensors"
    before = _weights(last)

    def killed_mid_write(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"half a file")
        raise KeyboardInterrupt  # the process dies during the write

    monkeypatch.setattr(storage, "save_file", killed_mid_write)
    with pytest.raises(KeyboardInterrupt):
        expert.train()  # continues with epoch 2 and dies writing its checkpoint
    after = _weights(last)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert load_checkpoint(last)[1]["epoch"] == 1
    assert not list(expert.ckpt_dir.glob(".*.tmp"))


def test_corrupt_checkpoint_is_a_clear_error(tmp_path, tiny):
    expert = _ce(tiny)
    expert.ckpt_dir.mkdir(parents=True)
    (expert.ckpt_dir / "last.safetensors").write_bytes(b"garbage")
    with pytest.raises(ArgseError, match=r"checkpoint .*last.safetensors is corrupt or not a safetensors file"):
        expert.train()


def test_best_copied_over_last_then_training_again_is_a_clear_error(tmp_path, tiny):
    expert = _ce(tiny)
    expert.train()
    shutil.copy(expert.ckpt_dir / "best.safetensors", expert.ckpt_dir / "last.safetensors")
    with pytest.raises(ArgseError, match=r"checkpoint .*last.safetensors holds weights only, not the training state"):
        expert.train()


def test_train_task_names_the_model_once():
    model = torch.nn.Linear(3, 2)
    data = TensorBatches(torch.zeros(4, 3), torch.zeros(4, dtype=torch.long), lambda x, _crops: x)
    task = TrainTask("t", model, data, torch.nn.functional.cross_entropy, dict, num_classes=2)
    assert task.network is model and task.params == list(model.parameters())
    model.eval()
    task.train_mode()
    assert model.training


def test_prepare_model_seeds_the_init_stream(tiny_cfg):
    a = prepare_model(tiny_cfg, 4, 0.0, torch.device("cpu"))
    torch.manual_seed(seeds.seed(tiny_cfg.seed, "init"))
    reference = build_model(tiny_cfg.model, 4)
    b = prepare_model(tiny_cfg, 4, 0.0, torch.device("cpu"))
    other = prepare_model(changed(tiny_cfg, seed=tiny_cfg.seed + 1), 4, 0.0, torch.device("cpu"))
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]) and torch.equal(v, reference.state_dict()[k])
    assert not torch.equal(a.fc.weight, other.fc.weight)


@pytest.mark.parametrize("native", [False, True])
def test_bf16_autocast_on_a_cpu_only_where_it_has_bf16_instructions(monkeypatch, native):
    from argse.config.sections import RuntimeConfig
    from argse.training import device

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    device.native_bf16.cache_clear()
    try:
        cpu = torch.device("cpu")
        with device.autocast(cpu, RuntimeConfig(bf16=True)):
            assert torch.is_autocast_enabled("cpu") == native
            assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == (torch.bfloat16 if native else torch.float32)
        with device.autocast(cpu, RuntimeConfig(bf16=False)):
            assert not torch.is_autocast_enabled("cpu")
    finally:
        device.native_bf16.cache_clear()


@pytest.mark.skipif(
    not torch.cpu._is_avx512_bf16_supported() and not torch.cpu._is_amx_tile_supported(),
    reason="this CPU has no bf16 instructions",
)
def test_an_expert_trains_and_exports_in_bf16_on_a_cpu_with_bf16_instructions(tmp_path, tiny):
    logits = {}
    for bf16 in ("false", "true"):
        expert = _ce(tiny + [f"runtime.bf16={bf16}", f"checkpoint_dir={tmp_path / bf16}"])
        expert.train()
        logits[bf16] = expert.predict_split(expert.ctx.data.held_out["test"])
    assert logits["true"].dtype == torch.float32 and logits["true"].isfinite().all()
    assert not torch.equal(logits["true"], logits["false"])  # the bf16 kernels did run
    assert torch.allclose(logits["true"], logits["false"], atol=0.5)  # and computed the same network
