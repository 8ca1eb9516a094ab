"""The GPU path: skipped on machines without CUDA (CI runs on CPU)."""

import pytest
import torch
import torch.nn.functional as F

from argse.config.loading import load_run_config
from argse.data.logits import read_logit_set, read_logits, split_file
from argse.data.long_tail import prepare_data
from argse.experts import ExpertContext, build_expert
from argse.stages import experts as stage_experts
from argse.stages.run import RunStages
from argse.training import CropFlip, Normalize
from tests.conftest import tiny_overrides

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")


def test_gpu_augmentation_matches_cpu_given_the_same_offsets():
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    gpu = CropFlip.draw(64, torch.Generator("cuda").manual_seed(0)).apply(x.cuda())
    assert gpu.is_cuda and gpu.dtype == torch.uint8 and gpu.shape == x.shape
    # Every output row is some padded, possibly flipped crop of its input image.
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for i in range(4):
        crops = [padded[i, :, a : a + 32, b : b + 32] for a in range(9) for b in range(9)]
        crops += [c.flip(2) for c in crops]
        assert any(torch.equal(gpu[i].cpu(), c) for c in crops)


def test_normalize_gives_channels_last_on_gpu():
    norm = Normalize((0.5, 0.5, 0.5), (0.25, 0.25, 0.25), torch.device("cuda"), channels_last=True)
    crops = CropFlip.draw(8, torch.Generator("cuda").manual_seed(0))
    out = norm(torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8, device="cuda"), crops)
    assert out.is_contiguous(memory_format=torch.channels_last) and out.dtype == torch.float32


@pytest.mark.parametrize("name", ["ce", "decoupling"])
def test_expert_trains_on_gpu_with_bf16_and_channels_last(tiny, name, tmp_path):
    cfg = load_run_config(None, tiny + ["runtime.device=cuda", "runtime.bf16=true", "runtime.channels_last=true"])
    ctx = ExpertContext(cfg, prepare_data(cfg), torch.device("cuda"), {name: cfg.ckpt_dir / name})
    expert = build_expert(name, ctx)
    expert.train()
    assert next(expert.model.parameters()).is_cuda
    images = ctx.train_batches.inputs
    assert images.is_cuda and images.dtype == torch.uint8  # the data lives on the GPU
    temperature = expert.calibrate()
    work = tmp_path / "export"
    stage_experts.write_export(work, ctx, expert, expert.held_out_logits(), temperature, cfg.ckpt_dir / name)
    assert all(split_file(work, split).is_file() for split in ("val", "tune", "test"))
    # The fitted temperature is no worse on val than none at all (T = 1): calibration worked on the GPU too.
    (val,) = read_logit_set([split_file(work, "val")])
    nll = [F.cross_entropy(val.logits.double() / t, val.labels) for t in (temperature, 1.0)]
    assert nll[0] <= nll[1] + 1e-9


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_torchrun_on_two_gpus_trains_like_one(tmp_path):
    """NCCL + torch SyncBatchNorm: 2 GPUs vs 1 GPU, fp32 (cuDNN is not bit-deterministic)."""
    from tests.test_distributed import finish, launch, weights

    gpu = ("--set", "runtime.device=cuda", "--set", "runtime.bf16=false")
    one, two = tmp_path / "one", tmp_path / "two"
    for root, procs in ((one, 1), (two, 2)):
        rc, output = finish(launch(root, procs, *gpu))
        assert rc == 0, output[-3000:]
    for expert in ("ce", "decoupling"):
        a, b = weights(one, expert), weights(two, expert)
        assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-3) for k in a), expert


def test_cuda_graphs_train_the_tiny_expert_and_match_eager_fp32(tiny, tmp_path):
    """runtime.cuda_graphs: two captured shapes (full batches, the remainder) train like the eager step.

    fp32 without bf16; cuDNN and the fused SGD are not bit-identical to the eager kernels, hence allclose.
    """
    from argse.training import load_checkpoint

    sets = ["runtime.device=cuda", "runtime.bf16=false", "recipes.ce.epochs=3", "recipes.ce.milestones=[2]"]
    weights = {}
    for graphs in ("false", "true"):
        cfg = load_run_config(
            None, tiny + sets + [f"runtime.cuda_graphs={graphs}", f"checkpoint_dir={tmp_path / graphs}"]
        )
        ctx = ExpertContext(cfg, prepare_data(cfg), torch.device("cuda"), {"ce": cfg.ckpt_dir / "ce"})
        expert = build_expert("ce", ctx)
        expert.train()
        weights[graphs] = load_checkpoint(expert.ckpt_dir / "last.safetensors")[0]
    a, b = weights["false"], weights["true"]
    assert a.keys() == b.keys()
    for k in a:
        if k.startswith("model.") and a[k].is_floating_point():
            assert torch.allclose(a[k], b[k], atol=1e-3, rtol=1e-3), k


def test_a_team_on_one_gpu_with_cuda_graphs_trains_what_one_by_one_training_does(tmp_path):
    """--team: ce, logit_adjust and decoupling (stage 1 with dropout, in the graph) on their own streams."""
    names = ["ce", "logit_adjust", "decoupling"]
    logits = {}
    for team in (False, True):
        root = tmp_path / str(team)
        sets = ["runtime.device=cuda", "runtime.cuda_graphs=true", "recipes.decoupling.stage1.dropout=0.5"]
        cfg = load_run_config(None, tiny_overrides(root) + sets)
        stage_experts.run(cfg, names, team=team)
        stages = RunStages(cfg)
        logits[team] = {n: read_logits(split_file(stages.expert(n).folder, "test")) for n in names}
    for n in names:
        assert torch.allclose(logits[True][n].logits, logits[False][n].logits, atol=1e-3, rtol=1e-3), n


def test_gpu_benchmark_section_prints_the_three_rows(tmp_path, monkeypatch):
    import benchmarks.__main__ as bench

    monkeypatch.setattr(bench, "ARCHIVE", tmp_path / "absent.tar.gz")
    out = tmp_path / "perf.md"
    assert bench.main(["--quick", "--only", "gpu", "--out", str(out)]) == 0
    text = out.read_text()
    assert "argse loop, eager" in text and "runtime.cuda_graphs" in text and "bare CUDA-graph step" in text
