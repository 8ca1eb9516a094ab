import json

import pytest
import torch
import torch.nn.functional as F

from argse import cli, train_gating
from argse.config.loading import load_run_config
from argse.core import storage
from argse.core.errors import ArgseError
from argse.data.logits import read_logit_set, read_logits, run_folders, split_file
from argse.data.splits import tune_parts
from argse.gating.network import constant_weights
from studies.logit_factory import peaked, write_run
from tests.test_logits import _rewrite

C, HEAD = 10, 7
COUNTS = [500, 300, 200, 120, 80, 60, 40, 10, 8, 5]  # tail (<= 20): classes 7, 8, 9


def logits_path(out, source, split):
    """A source's logits of one split as the run shows them (outputs/NAME/logits/<source> leads to its stage)."""
    return split_file(run_folders(out, [source])[source], split)


def head_expert(labels, g):
    """Right and sure on head classes; on tail samples wrong with middling confidence."""
    n = len(labels)
    tail = labels >= HEAD
    wrong = torch.randint(0, HEAD, (n,), generator=g)
    conf = torch.where(tail, 0.6, 0.95) + 0.03 * torch.rand(n, generator=g)
    return peaked(labels, torch.where(tail, wrong, labels), conf, C)


def tail_expert(labels, g):
    """Right on tail samples; on head samples it puts 0.45 on a wrong class and 0.3 on the right one."""
    n = len(labels)
    tail = labels >= HEAD
    wrong = (labels + 1 + torch.randint(0, C - 1, (n,), generator=g)) % C
    conf = 0.45 + 0.03 * torch.rand(n, generator=g)
    return torch.where(tail.view(-1, 1), peaked(labels, labels, conf, C), peaked(labels, wrong, conf, C, labels, 0.3))


@pytest.fixture
def run(tmp_path):
    experts = {"a_head": head_expert, "b_tail": tail_expert}
    write_run(tmp_path / "outputs" / "g", experts, C, COUNTS, overrides=["data.tail_max_count=20"])
    return [
        "--set",
        "experts=[a_head, b_tail]",
        "--set",
        f"output_dir={tmp_path / 'outputs'}",
        "--set",
        "name=g",
        "--set",
        "data.tail_max_count=20",
        "--set",
        "gating.epochs=200",
        "--set",
        "gating.patience=200",
    ]


def _report(tmp_path):
    return json.loads((tmp_path / "outputs" / "g" / "gating" / "gate.json").read_text())


def test_learned_gate_beats_each_expert_and_the_uniform_average(tmp_path, run):
    assert train_gating.main(run) == 0
    rep = _report(tmp_path)["test"]
    gated = rep["gating (learned)"]["balanced_acc"]
    assert (
        gated > max(rep["a_head"]["balanced_acc"], rep["b_tail"]["balanced_acc"], rep["uniform"]["balanced_acc"]) + 0.1
    )
    w = _report(tmp_path)["mean_weight_by_group"]
    assert w["head"]["a_head"] > 0.5 > w["tail"]["a_head"]
    # A routing gate beats the best constant mixture fitted on its own training data ...
    assert gated > rep["constant (fitted)"]["balanced_acc"] + 0.05
    # ... and its weights spread: head samples mostly to a_head, tail samples mostly to b_tail.
    routing = _report(tmp_path)["routing"]
    assert routing["head"]["a_head"]["p10"] > 0.5 > routing["tail"]["a_head"]["p90"]


def test_constant_weights_minimise_the_mixture_nll():
    # Expert 0 gives the label probability 0.8 on 3 samples and 0.1 on 1; expert 1 the reverse.
    # NLL(w) = -(3 log(0.1 + 0.7 w) + log(0.8 - 0.7 w)) / 4; its derivative vanishes at w = 23/28.
    lp = torch.tensor([[0.8, 0.1]] * 3 + [[0.1, 0.8]]).log()
    w = constant_weights(lp, torch.ones(4))
    assert w[0].item() == pytest.approx(23 / 28, abs=1e-5) and w.sum().item() == pytest.approx(1.0)


def test_gate_and_rejectors_use_disjoint_parts_of_tune(tmp_path, run, capsys):
    from argse import evaluate

    assert train_gating.main(run) == 0
    assert evaluate.main(run + ["--methods", "chow"]) == 0
    gate = set(_report(tmp_path)["samples"]["gate_trained_on"]["indices"])
    report = json.loads((tmp_path / "outputs" / "g" / "evaluation" / "report.json").read_text())
    rejectors = set(report["samples"]["rejectors_fitted_on"]["indices"])
    tune = set(read_logits(logits_path(tmp_path / "outputs" / "g", "a_head", "tune")).indices.tolist())
    assert gate and rejectors and not gate & rejectors and gate | rejectors == tune
    assert set(_report(tmp_path)["samples"]["left_for_rejectors"]["indices"]) == rejectors
    assert len(gate) == len(tune) // 2  # gating.tune_fraction = 0.5 of 40 per class
    # Evaluating the gate with another split than its own would fit rejectors on its training samples: refused,
    # as the config has no such gate (a gate's id holds the split of tune; the split manifest's, the run seed).
    for change, missing in [("gating.tune_fraction=0.3", "gate over its experts"), ("seed=1", "split manifest")]:
        capsys.readouterr()
        argv = run + ["--methods", "chow", "--sources", "a_head,gating", "--set", change]
        assert cli.run(evaluate.main, argv) == 2
        assert f"this config has no {missing} yet" in capsys.readouterr().err


def test_tune_parts_keep_the_class_mix():
    labels = torch.arange(4).repeat_interleave(torch.tensor([10, 7, 2, 1]))
    gate, rest = tune_parts(labels, 0.3, seed=0)
    assert torch.bincount(labels[gate], minlength=4).tolist() == [3, 2, 1, 0]
    assert sorted(gate.tolist() + rest.tolist()) == list(range(len(labels)))
    assert torch.equal(tune_parts(labels, 0.3, seed=0)[0], gate) and not torch.equal(
        tune_parts(labels, 0.3, 1)[0], gate
    )


def test_exported_mixture_passes_the_reader_and_sums_to_one(tmp_path, run):
    assert train_gating.main(run) == 0
    out = tmp_path / "outputs" / "g"
    for split in ("val", "tune", "test"):
        mix, expert = read_logit_set([logits_path(out, "gating", split), logits_path(out, "a_head", split)])
        assert mix.expert == "gating" and mix.temperature == 1.0
        assert torch.allclose(
            mix.logits.double().exp().sum(1), torch.ones(len(mix.labels), dtype=torch.float64), atol=1e-5
        )


def test_deterministic(tmp_path, run):
    out = tmp_path / "outputs" / "g"
    assert train_gating.main(run) == 0
    stage = (out / "gating").resolve()
    first = read_logits(logits_path(out, "gating", "test")).logits
    assert train_gating.main(run) == 0 and (out / "gating").resolve() == stage  # found, not trained again
    assert train_gating.main(run + ["--rebuild"]) == 0  # trained again, into the same stage (one id)
    assert (out / "gating").resolve() == stage and len(list((out / "stages" / ".retired").iterdir())) == 1
    assert torch.equal(first, read_logits(logits_path(out, "gating", "test")).logits)


@pytest.mark.parametrize("gate", ["learned", "uniform"])
def test_one_expert_is_that_expert_exactly(tmp_path, run, gate):
    assert train_gating.main(run + ["--experts", "a_head", "--set", f"gating.gate={gate}"]) == 0
    out = tmp_path / "outputs" / "g"
    mix = read_logits(logits_path(out, "gating", "test")).logits
    expert = read_logits(logits_path(out, "a_head", "test"))
    assert torch.allclose(mix, F.log_softmax(expert.calibrated, 1), atol=1e-5)


def test_fixed_weights(tmp_path, run):
    assert train_gating.main(run + ["--set", "gating.gate=fixed", "--set", "gating.fixed_weights=[1.0, 0.0]"]) == 0
    rep = _report(tmp_path)["test"]
    assert rep["gating (fixed)"]["balanced_acc"] == pytest.approx(rep["a_head"]["balanced_acc"])
    assert cli.run(train_gating.main, run + ["--set", "gating.gate=fixed", "--set", "gating.fixed_weights=[1.0]"]) == 2


def _break(tmp_path, expert, split, **changes):
    _rewrite(logits_path(tmp_path / "outputs" / "g", expert, split), **changes)


@pytest.mark.parametrize(
    "breakage,message",
    [
        ("missing", "'c_missing' is no registered expert (available: "),
        ("indices", "field 'indices' differs"),
        ("classes", "field 'num_classes' differs"),
        ("nan", "field 'logits' contains NaN"),
    ],
)
def test_bad_inputs_are_one_sentence(tmp_path, run, capsys, breakage, message):
    argv = run
    if breakage == "missing":
        argv = run + ["--experts", "a_head,c_missing"]
    elif breakage == "indices":
        _break(tmp_path, "b_tail", "val", indices=torch.arange(200).flip(0))
    elif breakage == "classes":
        _break(tmp_path, "b_tail", "test", logits=torch.zeros(400, C + 1), class_counts=COUNTS + [1])
    else:
        path = logits_path(tmp_path / "outputs" / "g", "b_tail", "tune")
        nan = torch.full((400, C), float("nan"))
        with pytest.raises(ArgseError, match="NaN or infinite logits on tune, so .* was not written"):
            _break(tmp_path, "b_tail", "tune", logits=nan)  # argse never writes such a file...
        tensors, meta = storage.load_tensors(path)
        storage.save_tensors(path, tensors | {"logits": nan}, meta)  # ...but a damaged copy is still caught
    assert cli.run(train_gating.main, argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_gate_work_per_sample_is_class_count_free():
    """The gate's work per sample, counted as its feature width and its MLP's weights (one multiply-add
    each), is the same for 10 and 1000 classes with the rich features; adding the posteriors makes it
    grow with the class count, so the count can tell the two apart."""
    from argse.gating import GateMLP, gating_features

    def work(classes: int, with_posteriors: bool) -> tuple[int, int]:
        probs = torch.softmax(torch.randn(4, 50, classes), dim=2)
        feats = gating_features(probs, with_posteriors=with_posteriors)
        gate = GateMLP(feats.shape[1], 4, [64, 64], 0.1)
        return feats.shape[1], sum(p.numel() for p in gate.net.parameters() if p.dim() == 2)

    assert work(10, False) == work(1000, False)
    assert work(10, False)[0] == 4 * 6 + 2
    small, large = work(10, True), work(1000, True)
    assert large[0] - small[0] == 4 * (1000 - 10) and large[1] > small[1]


def test_default_gate_is_learned():
    assert load_run_config(None).gating.gate == "learned"
