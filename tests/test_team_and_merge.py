"""The team is the config's ``experts`` (train_gating, evaluate), a partial evaluation merges into the
earlier one made under the same settings, and predict names the source it defaults to."""

import json
from types import SimpleNamespace

import pytest
import torch

from argse import evaluate, predict, prediction, train_gating
from studies.logit_factory import write_run

COUNTS = [100, 50, 10, 5]


def _expert(sharpness: float):
    def model(labels, g):
        return torch.randn(len(labels), 4, generator=g) + sharpness * torch.nn.functional.one_hot(labels, 4)

    return model


@pytest.fixture
def run(tmp_path):
    """Logits of a, b and an extra c in the folder; the config's experts are a and b; a uniform gate (fast)."""
    write_run(tmp_path / "o" / "t", {"a": _expert(2.0), "b": _expert(1.5), "c": _expert(1.0)}, 4, COUNTS)
    sets = {"output_dir": tmp_path / "o", "name": "t", "data.tail_max_count": 10, "experts": "[a, b]",
            "gating.gate": "uniform"}  # fmt: skip
    return [x for k, v in sets.items() for x in ("--set", f"{k}={v}")]


def _evaluation(tmp_path) -> tuple[dict, dict]:
    out = tmp_path / "o" / "t" / "evaluation"
    return json.loads((out / "report.json").read_text()), json.loads((out / "rules.json").read_text())


def _results(report: dict) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for r in report["results"]:
        found.setdefault(r["source"], set()).add(r["method"])
    return found


def test_train_gating_mixes_the_configs_experts_only(tmp_path, run, capsys):
    assert train_gating.main(run) == 0
    gate = json.loads((tmp_path / "o" / "t" / "gating" / "gate.json").read_text())
    assert gate["experts"] == ["a", "b"]
    out = capsys.readouterr().out
    assert "experts: a, b (the config's experts" in out
    assert "ignored: logits of c (not in the config's experts; add it to experts or pass --experts)" in out
    # --experts still chooses, and then nothing is reported as ignored.
    assert train_gating.main(run + ["--experts", "a,c"]) == 0
    assert json.loads((tmp_path / "o" / "t" / "gating" / "gate.json").read_text())["experts"] == ["a", "c"]
    assert "ignored:" not in capsys.readouterr().out


def test_an_expert_of_the_config_without_logits_is_one_sentence(tmp_path, run, capsys):
    from argse import cli

    for main in (train_gating.main, evaluate.main):
        capsys.readouterr()
        assert cli.run(main, run + ["--set", "experts=[a, d]"]) == 2
        err = capsys.readouterr().err
        assert "the config's experts name d, which has no exported logits" in err and err.count("\n") == 1


def test_evaluate_defaults_to_the_configs_experts_and_its_gate(tmp_path, run, capsys):
    assert evaluate.main(run + ["--methods", "chow"]) == 0  # no gate yet: the experts alone
    assert set(_results(_evaluation(tmp_path)[0])) == {"a", "b"}
    out = capsys.readouterr().out
    assert "sources: a, b (the config's experts" in out and "ignored: logits of c" in out
    assert train_gating.main(run) == 0
    capsys.readouterr()
    assert evaluate.main(run + ["--methods", "chow"]) == 0
    report, rules = _evaluation(tmp_path)
    assert set(_results(report)) == set(rules["rules"]) == {"a", "b", "gating"}
    out = capsys.readouterr().out
    assert "sources: a, b, gating (the config's experts and its gate" in out
    assert "ignored: logits of c (not in the config's experts; add it to experts or pass --sources)" in out


def test_evaluating_one_source_keeps_the_others_results(tmp_path, run, capsys):
    assert train_gating.main(run) == 0
    assert evaluate.main(run + ["--methods", "chow"]) == 0
    before, _ = _evaluation(tmp_path)
    capsys.readouterr()
    assert evaluate.main(run + ["--sources", "a", "--methods", "chow,plugin_balanced"]) == 0
    report, rules = _evaluation(tmp_path)
    # a's results are replaced (it now has both methods); b's and gating's are kept as they were, in their order.
    assert _results(report) == {"a": {"chow", "plugin_balanced"}, "b": {"chow"}, "gating": {"chow"}}
    assert list(rules["rules"]) == ["a", "b", "gating"] and set(rules["rules"]["a"]) == {"chow", "plugin_balanced"}
    kept = [r for r in report["results"] if r["source"] != "a"]
    assert kept == [r for r in before["results"] if r["source"] != "a"]
    csv = (tmp_path / "o" / "t" / "evaluation" / "rc_curves.csv").read_text()
    assert {line.split(",")[0] for line in csv.splitlines()[1:]} == {"a", "b", "gating"}
    assert "kept: the earlier results of b, gating" in capsys.readouterr().out


def test_other_settings_drop_the_earlier_results_with_one_line(tmp_path, run, capsys):
    assert train_gating.main(run) == 0
    assert evaluate.main(run + ["--methods", "chow"]) == 0
    capsys.readouterr()
    argv = run + ["--sources", "a", "--methods", "chow", "--set", "evaluate.test_prior=balanced"]
    assert evaluate.main(argv) == 0
    report, rules = _evaluation(tmp_path)
    assert set(_results(report)) == set(rules["rules"]) == {"a"}
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("dropped:")]
    assert len(lines) == 1
    assert "the earlier results of b, gating" in lines[0] and "test_prior" in lines[0]


def test_results_of_a_source_made_again_since_are_dropped(tmp_path, run, capsys):
    """A gate trained again after the evaluation makes gating's earlier rules stale: they are not kept."""
    assert train_gating.main(run) == 0
    assert evaluate.main(run + ["--methods", "chow"]) == 0
    assert train_gating.main(run) == 0
    capsys.readouterr()
    assert evaluate.main(run + ["--sources", "a", "--methods", "chow"]) == 0
    report, rules = _evaluation(tmp_path)
    assert set(_results(report)) == set(rules["rules"]) == {"a", "b"}
    out = capsys.readouterr().out
    assert "dropped: the earlier results of gating (made again since that evaluation)" in out


def test_predict_names_the_source_it_defaults_to(tmp_path, run, capsys, monkeypatch):
    """Predict's default source comes from rules.json; the line says which (the images themselves are not
    predicted here: argse.prediction is replaced by a stub that records the source it is given)."""
    assert train_gating.main(run) == 0
    assert evaluate.main(run + ["--methods", "chow"]) == 0
    given = []

    def stub(cfg, source, method, rate, classes=None):
        given.append(source)
        team = prediction.Team(["a", "b"], [], [], None)
        return prediction.Predictor(cfg, SimpleNamespace(source=source), SimpleNamespace(image_size=[8, 8]), team,
                                    ["a"], None)  # fmt: skip

    row = {"path": "x.png", "class": "a", "probability": 0.9, "decision": "accepted", "score": 0.5, "threshold": 0.1}
    monkeypatch.setattr(predict, "open_predictor", stub)
    monkeypatch.setattr(predict, "predict_files", lambda predictor, inputs, batch_size, top_k: ([row], []))
    monkeypatch.setattr(predict, "read_inputs", lambda path: prediction.Inputs([tmp_path / "x.png"]))
    capsys.readouterr()
    assert predict.main(run + ["--method", "chow", "--out", str(tmp_path / "p.csv"), str(tmp_path)]) == 0
    assert given == ["gating"]
    assert "source: gating (the default when a gate was evaluated; --source to choose)" in capsys.readouterr().out
    assert (
        predict.main(run + ["--method", "chow", "--source", "b", "--out", str(tmp_path / "p.csv"), str(tmp_path)]) == 0
    )
    assert given[-1] == "b" and "source:" not in capsys.readouterr().out
