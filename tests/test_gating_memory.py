"""train_gating reads its splits a block of samples at a time (argse.gating.network.FEATURE_ROWS): the gate,
gate.json and the mixture's logits are those of the whole arrays, exactly."""

import pytest
import torch
import torch.nn.functional as F

from argse import cli, train_gating
from argse.config.loading import load_run_config
from argse.core import storage
from argse.data.logits import load_sources, read_logits, run_folders, run_manifest
from argse.gating import network
from argse.gating.network import mixture_log_probs
from argse.stages.gate_file import read_gate
from argse.stages.run import RunStages
from studies.logit_factory import write_run
from tests.test_gating import COUNTS, C, head_expert, logits_path, tail_expert
from tests.test_logits import _rewrite

EXPERTS = {
    "a_head": head_expert,
    "b_tail": tail_expert,
    "c_noise": lambda y, g: 2 * torch.randn(len(y), C, generator=g),
}
TEMPERATURES = {"a_head": 1.37, "b_tail": 0.71, "c_noise": 2.9}
SIZES = {"val": 23, "tune": 41, "test": 37}  # per class: no split is a whole number of blocks
WHOLE = 10**9  # one block per split: the arrays as a whole


@pytest.fixture
def run(tmp_path):
    out = tmp_path / "outputs" / "g"
    write_run(out, EXPERTS, C, COUNTS, split_sizes=SIZES, overrides=["data.tail_max_count=20"])
    for name, t in TEMPERATURES.items():
        for split in SIZES:
            _rewrite(logits_path(out, name, split), temperature=t)  # in the experts' stages, as if exported so
    sets = ["experts=[a_head, b_tail, c_noise]", f"output_dir={tmp_path / 'outputs'}", "name=g"]
    sets += ["data.tail_max_count=20", "gating.epochs=40", "gating.patience=40", "runtime.progress=false"]
    return out, [arg for s in sets for arg in ("--set", s)]


def outputs(out) -> dict:
    """Everything train_gating wrote that the run's later steps read."""
    found = {"gate.json": (out / "gating" / "gate.json").read_text()}
    if (out / "gating" / "gate.safetensors").is_file():
        found |= {f"gate/{k}": v for k, v in storage.load_tensors(out / "gating" / "gate.safetensors")[0].items()}
    return found | {s: read_logits(logits_path(out, "gating", s)).logits for s in SIZES}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        torch.equal(a[k], b[k]) if isinstance(a[k], torch.Tensor) else a[k] == b[k] for k in a
    )


@pytest.mark.parametrize(
    "sets",
    [[], ["gating.objective=selective_balanced", "gating.epochs=8"], ["gating.gate=uniform"]],
    ids=["balanced_nll", "selective_balanced", "uniform"],
)
def test_blocks_of_rows_give_the_whole_arrays_results(run, monkeypatch, sets):
    out, argv = run
    argv = argv + [arg for s in sets for arg in ("--set", s)]
    monkeypatch.setattr(network, "FEATURE_ROWS", WHOLE)
    assert train_gating.main(argv) == 0
    whole = outputs(out)
    monkeypatch.setattr(network, "FEATURE_ROWS", 7)
    assert train_gating.main(argv + ["--rebuild"]) == 0  # trained again (the same command would find it)
    assert same(outputs(out), whole)


def test_exported_mixture_is_the_whole_array_formula(run, monkeypatch):
    """The mixture as train_gating made it before it read in blocks: the [E, N, C] float64 log-softmax of every
    expert's calibrated logits, the gate's weights from its features, mixed and rounded to float32."""
    out, argv = run
    monkeypatch.setattr(network, "FEATURE_ROWS", 7)
    assert train_gating.main(argv) == 0
    cfg = load_run_config(None, [s for s in argv if s != "--set"])
    gate = read_gate(RunStages(cfg).gate().folder)
    files = load_sources(run_folders(out, list(EXPERTS)), list(SIZES), run_manifest(out))
    monkeypatch.setattr(network, "FEATURE_ROWS", 2048)  # the features as predict computes them
    for split, team in files.items():
        logp = torch.stack([F.log_softmax(f.calibrated.double(), dim=1) for f in team])
        expected = mixture_log_probs(gate.log_weights(logp), logp).float()
        assert torch.equal(read_logits(logits_path(out, "gating", split)).logits, expected)


def test_a_bad_row_in_the_last_block_is_refused_before_anything_is_written(run, monkeypatch, capsys):
    out, argv = run
    path = logits_path(out, "c_noise", "test")
    f = read_logits(path)
    logits = f.logits.clone()
    logits[-1, 3] = float("inf")
    tensors, meta = storage.load_tensors(path)
    storage.save_tensors(path, tensors | {"logits": logits}, meta)  # a damaged copy: argse never writes one
    stage = RunStages(load_run_config(None, [s for s in argv if s != "--set"])).expert("c_noise")
    monkeypatch.setattr(network, "FEATURE_ROWS", 7)
    assert cli.run(train_gating.main, argv) == 2
    err = capsys.readouterr().err.strip()
    message = f"logits file {stage.file('test.safetensors')}: field 'logits' contains NaN or infinite values"
    assert message in err and len(err.splitlines()) == 1
    assert not (out / "gating").exists() and not logits_path(out, "gating", "tune").exists()
    assert not list((out / "stages").glob("gate-*")) and not list((out / "stages" / ".work").glob("gate-*/"))
