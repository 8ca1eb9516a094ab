"""The team is the config's ``experts`` (train_gating, evaluate), a partial evaluation is an evaluation of its
own beside the earlier one (nothing is merged), a source made again since leaves the earlier gate and
evaluation unfound, and predict names the source it defaults to."""

import json
import shutil
from types import SimpleNamespace

import pytest
import torch

from argse import cli, evaluate, predict, train_gating
from argse.inference import inputs
from argse.inference import team as team_module
from studies.logit_factory import write_run

COUNTS = [100, 50, 10, 5]
SETS = {"data.tail_max_count": 10, "experts": "[a, b]", "gating.gate": "uniform"}


def _expert(sharpness: float):
    def model(labels, g):
        return torch.randn(len(labels), 4, generator=g) + sharpness * torch.nn.functional.one_hot(labels, 4)

    return model


@pytest.fixture
def run(tmp_path):
    """Logits of a, b and an extra c in the run; the config's experts are a and b; a uniform gate (fast)."""
    write_run(tmp_path / "o" / "t", {"a": _expert(2.0), "b": _expert(1.5), "c": _expert(1.0)}, 4, COUNTS,
              overrides=["data.tail_max_count=10"])  # fmt: skip
    sets = {"output_dir": tmp_path / "o", "name": "t"} | SETS
    return [x for k, v in sets.items() for x in ("--set", f"{k}={v}")]


def _evaluation(tmp_path) -> tuple[dict, dict]:
    out = tmp_path / "o" / "t" / "evaluation"
    return json.loads((out / "report.json").read_text()), json.loads((out / "rules.json").read_text())


def _results(report: dict) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for r in report["results"]:
        found.setdefault(r["source"], set()).add(r["method"])
    return found


def _stage(tmp_path, name: str):
    """The stage folder ``outputs/t/<name>`` leads to now."""
    return (tmp_path / "o" / "t" / name).resolve()


def test_train_gating_mixes_the_configs_experts_only(tmp_path, run, capsys):
    assert train_gating.main(run) == 0
    gate = json.loads((tmp_path / "o" / "t" / "gating" / "gate.json").read_text())
    assert gate["experts"] == ["a", "b"]
    assert "experts: a, b (the config's experts" in capsys.readouterr().out
    first = _stage(tmp_path, "gating")
    # --experts still chooses (it sets experts=[...]): another gate, in a stage of its own.
    assert train_gating.main(run + ["--experts", "a,c"]) == 0
    assert json.loads((tmp_path / "o" / "t" / "gating" / "gate.json").read_text())["experts"] == ["a", "c"]
    assert "experts: a, c\n" in capsys.readouterr().out and _stage(tmp_path, "gating") != first
    # The config's own gate is still there: found, not trained again.
    assert train_gating.main(run) == 0
    assert "gate: found" in capsys.readouterr().out and _stage(tmp_path, "gating") == first


def test_an_expert_of_the_config_without_logits_is_one_sentence(tmp_path, run, capsys):
    for main in (train_gating.main, evaluate.main):
        capsys.readouterr()
        assert cli.run(main, run + ["--set", "experts=[a, d]"]) == 2
        err = capsys.readouterr().err
        assert "'d' is no registered expert" in err and err.count("\n") == 1
        assert "this run has no logits imported under that name (python -m argse.stages import)" in err


def test_evaluate_defaults_to_the_configs_experts_and_its_gate(tmp_path, run, capsys):
    assert evaluate.main(run + ["--methods", "chow"]) == 0  # no gate yet: the experts alone
    assert set(_results(_evaluation(tmp_path)[0])) == {"a", "b"}
    assert "sources: a, b (the config's experts" in capsys.readouterr().out
    assert train_gating.main(run) == 0
    capsys.readouterr()
    assert evaluate.main(run + ["--methods", "chow"]) == 0
    report, rules = _evaluation(tmp_path)
    assert set(_results(report)) == set(rules["rules"]) == {"a", "b", "gating"}
    assert "sources: a, b, gating (the config's experts and its gate" in capsys.readouterr().out


def test_evaluating_one_source_is_an_evaluation_of_its_own(tmp_path, run, capsys):
    assert train_gating.main(run) == 0
    assert evaluate.main(run + ["--methods", "chow"]) == 0
    before, before_rules = _evaluation(tmp_path)
    whole = _stage(tmp_path, "evaluation")
    assert evaluate.main(run + ["--sources", "a", "--methods", "chow,plugin_balanced"]) == 0
    report, rules = _evaluation(tmp_path)
    # Only a's results, with both methods: nothing is merged from the earlier evaluation ...
    assert _results(report) == {"a": {"chow", "plugin_balanced"}}
    assert list(rules["rules"]) == ["a"] and set(rules["rules"]["a"]) == {"chow", "plugin_balanced"}
    csv = (tmp_path / "o" / "t" / "evaluation" / "rc_curves.csv").read_text()
    assert {line.split(",")[0] for line in csv.splitlines()[1:]} == {"a"}
    # ... which is kept as it was, in its own stage, and found again by the command that made it.
    assert _stage(tmp_path, "evaluation") != whole and whole.is_dir()
    capsys.readouterr()
    assert evaluate.main(run + ["--methods", "chow"]) == 0
    assert "evaluation: found" in capsys.readouterr().out and _stage(tmp_path, "evaluation") == whole
    assert _evaluation(tmp_path) == (before, before_rules)


def test_other_settings_are_another_evaluation(tmp_path, run, capsys):
    assert train_gating.main(run) == 0
    assert evaluate.main(run + ["--methods", "chow"]) == 0
    before, whole = _evaluation(tmp_path)[0], _stage(tmp_path, "evaluation")
    argv = run + ["--sources", "a", "--methods", "chow", "--set", "evaluate.test_prior=balanced"]
    assert evaluate.main(argv) == 0
    report, rules = _evaluation(tmp_path)
    assert set(_results(report)) == set(rules["rules"]) == {"a"}
    assert report["test_prior"] == "balanced"
    assert _stage(tmp_path, "evaluation") != whole  # the train-prior evaluation is untouched beside it
    assert json.loads((whole / "report.json").read_text()) == before


def test_a_source_made_again_since_leaves_the_earlier_gate_and_evaluation_unfound(tmp_path, run, capsys):
    """Other logits of a (its stage removed by hand and made again): the gate and the evaluation that read the
    earlier ones are not this config's any more, as their ids hold a's content; they are made again."""
    assert train_gating.main(run) == 0
    assert evaluate.main(run + ["--methods", "chow"]) == 0
    gate, evaluation = _stage(tmp_path, "gating"), _stage(tmp_path, "evaluation")
    shutil.rmtree(_stage(tmp_path, "logits/a"))
    write_run(tmp_path / "o" / "t", {"a": _expert(0.5)}, 4, COUNTS, seed=1, overrides=["data.tail_max_count=10"])
    capsys.readouterr()
    assert cli.run(evaluate.main, run + ["--methods", "chow", "--sources", "a,b,gating"]) == 2
    err = capsys.readouterr().err
    assert "this config has no gate over its experts yet" in err and "make it with python -m argse.train_gating" in err
    assert evaluate.main(run + ["--methods", "chow"]) == 0  # the config has no gate now: its experts alone
    report, rules = _evaluation(tmp_path)
    assert set(_results(report)) == set(rules["rules"]) == {"a", "b"}
    assert _stage(tmp_path, "evaluation") != evaluation
    assert train_gating.main(run) == 0 and _stage(tmp_path, "gating") != gate and gate.is_dir()
    assert evaluate.main(run + ["--methods", "chow"]) == 0
    assert set(_results(_evaluation(tmp_path)[0])) == {"a", "b", "gating"}
    assert _stage(tmp_path, "evaluation") != evaluation


def test_predict_names_the_source_it_defaults_to(tmp_path, run, capsys, monkeypatch):
    """Predict's default source comes from rules.json; the line says which (the images themselves are not
    predicted here: argse.prediction is replaced by a stub that records the source it is given)."""
    run = run + ["--set", "evaluate.methods=[chow]"]  # predict finds the evaluation made under its config
    assert train_gating.main(run) == 0
    assert evaluate.main(run) == 0
    given = []

    def stub(cfg, source, method, rate, classes=None, guarantee=None):
        given.append(source)
        team = team_module.Team(["a", "b"], [], [], None)
        return team_module.Predictor(cfg, SimpleNamespace(source=source), SimpleNamespace(image_size=[8, 8]), team,
                                    ["a"], None)  # fmt: skip

    row = {"path": "x.png", "class": "a", "probability": 0.9, "decision": "accepted", "score": 0.5, "threshold": 0.1}
    monkeypatch.setattr(predict, "open_predictor", stub)
    monkeypatch.setattr(predict, "predict_files", lambda predictor, inputs, batch_size, top_k: ([row], []))
    monkeypatch.setattr(predict, "read_inputs", lambda path: inputs.Inputs([tmp_path / "x.png"]))
    capsys.readouterr()
    assert predict.main(run + ["--method", "chow", "--out", str(tmp_path / "p.csv"), str(tmp_path)]) == 0
    assert given == ["gating"]
    assert "source: gating (the default when a gate was evaluated; --source to choose)" in capsys.readouterr().out
    assert (
        predict.main(run + ["--method", "chow", "--source", "b", "--out", str(tmp_path / "p.csv"), str(tmp_path)]) == 0
    )
    assert given[-1] == "b" and "source:" not in capsys.readouterr().out
