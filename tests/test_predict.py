"""argse.predict on a tiny trained run reproduces what argse.evaluate decided on the test images."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from argse import cli, evaluate, predict, prediction, train_experts, train_gating
from argse.config import load_run_config
from argse.data import prepare_data
from argse.logits import logits_path, read_logits
from argse.preprocess import read_preprocess
from argse.selective import Rule, group_view
from tests.conftest import tiny_overrides

RATE = 0.2


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two tiny experts, a gate and the fitted rejectors; the test images written as PNG files."""
    tmp = tmp_path_factory.mktemp("predict")
    sets = tiny_overrides(
        tmp,
        **{
            "data.synthetic_lt.test_per_class": "40",
            "gating.epochs": "30",
            "experts": "[ce, logit_adjust, posthoc_adjust]",
        },
    )
    argv = [x for s in sets for x in ("--set", s)]
    assert train_experts.main(argv + ["--experts", "ce,logit_adjust,posthoc_adjust"]) == 0
    assert train_gating.main(argv) == 0
    cfg = load_run_config(None, sets)
    # Before evaluate there is no rejector to use.
    (tmp / "one").mkdir()
    test = prepare_data(cfg).held_out["test"]
    Image.fromarray(test.images[0].permute(1, 2, 0).numpy()).save(tmp / "one" / "a.png")
    assert cli.run(predict.main, argv + [str(tmp / "one")]) == 2
    assert (
        evaluate.main(argv + ["--sources", "ce,gating,posthoc_adjust", "--methods", "plugin_balanced,plugin_worst"])
        == 0
    )
    folder = tmp / "images"
    folder.mkdir()
    for i, image in enumerate(test.images):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"{i:04d}.png")
    return tmp, argv, cfg, folder


def evaluate_decisions(cfg, source: str, method: str):
    """What evaluate's rule decides on test: accepted and predicted class, from rules.json and the logits."""
    rules = json.loads((cfg.out_dir / "evaluation" / "rules.json").read_text())
    rule = next(r for r in rules["rules"][source][method] if r["rate"] == RATE)
    f = read_logits(logits_path(cfg.out_dir, source, "test"))
    probs = f.probs.numpy()
    view = group_view(probs, f.labels.numpy(), np.asarray(rules["class_group"]), len(rules["groups"]))
    accepted, _ = Rule(np.asarray(rule["alpha"]), np.asarray(rule["b"]), rule["t"]).apply(view)
    alpha_c = np.asarray(rule["alpha"])[np.asarray(rules["class_group"])]
    return accepted, (alpha_c * probs).argmax(1)


@pytest.mark.parametrize(
    "source, method", [("gating", "plugin_worst"), ("ce", "plugin_balanced"), ("posthoc_adjust", "plugin_balanced")]
)
def test_predict_reproduces_evaluate_on_test_images(trained, source, method):
    tmp, argv, cfg, folder = trained
    out = tmp / f"{source}.jsonl"
    code = predict.main(argv + [str(folder), "--source", source, "--method", method, "--rate", str(RATE),
                                "--format", "jsonl", "--out", str(out), "--batch-size", "13"])  # fmt: skip
    assert code == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    accepted, pred = evaluate_decisions(cfg, source, method)
    assert len(rows) == len(accepted) and 0 < accepted.sum() < len(accepted)
    assert [r["decision"] == "accepted" for r in rows] == accepted.tolist()
    assert [r["class_index"] for r in rows] == pred.tolist()
    assert all(r["class"] == f"class_{r['class_index']}" for r in rows)
    if source == "gating":
        assert all(abs(sum(r["gate_weights"].values()) - 1) < 1e-6 for r in rows)


def test_corrupt_image_is_named_and_the_rest_predicted(trained, capsys):
    tmp, argv, cfg, folder = trained
    mixed = tmp / "mixed"
    mixed.mkdir()
    for name in ("0000.png", "0001.png"):
        (mixed / name).write_bytes((folder / name).read_bytes())
    (mixed / "0000b_broken.png").write_bytes(b"not an image at all")
    listing = tmp / "list.txt"
    listing.write_text("mixed/0000.png 3\nmixed/0000b_broken.png\nmixed/0001.png\n")
    out = tmp / "mixed.csv"
    assert predict.main(argv + [str(listing), "--out", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert lines[0].startswith("path,class,probability,decision,score,threshold,weight_ce,weight_logit_adjust")
    assert len(lines) == 3 and "0000.png" in lines[1] and "0001.png" in lines[2]
    assert "0000b_broken.png cannot be decoded" in capsys.readouterr().err


def test_image_size_mismatch_and_unknown_rate(trained, capsys):
    tmp, argv, cfg, folder = trained
    big = tmp / "big.png"
    Image.fromarray(np.zeros((20, 20, 3), dtype=np.uint8)).save(big)
    assert cli.run(predict.main, argv + [str(big)]) == 2
    assert "is 20x20 pixels but the models of this run take 8x8" in capsys.readouterr().err
    assert cli.run(predict.main, argv + [str(folder / "0000.png"), "--rate", "0.33"]) == 2
    assert "no rule was fitted for rejection rate 0.33" in capsys.readouterr().err
    assert torch.is_tensor(prediction.decode(folder / "0000.png", read_preprocess(cfg.paths)))
