"""argse.predict on a tiny trained run reproduces what argse.evaluate decided on the test images."""

import json
import os
import re
from decimal import Decimal

import numpy as np
import pytest
import torch
from PIL import Image

from argse import cli, evaluate, inference, predict, train_experts, train_gating
from argse.config.loading import load_run_config
from argse.core.errors import ArgseError
from argse.data import decode
from argse.data.decode import ImageError
from argse.data.logits import read_logits, split_file
from argse.data.long_tail import prepare_data
from argse.data.preprocess import FILE as PREPROCESS
from argse.data.preprocess import eval_image, read_preprocess
from argse.inference import inputs
from argse.inference import team as team_module
from argse.inference.team import open_predictor
from argse.selective.rejectors import Rule
from argse.selective.views import group_view
from argse.stages.run import RunStages
from tests.conftest import tiny_overrides
from tests.tiny_run import REPO

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
            # The rejectors are part of the config: predict finds the evaluation that evaluate made from it.
            "evaluate.methods": "[plugin_balanced, plugin_worst]",
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
    assert evaluate.main(argv + ["--sources", "ce,gating,posthoc_adjust"]) == 0
    folder = tmp / "images"
    folder.mkdir()
    for i, image in enumerate(test.images):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"{i:04d}.png")
    return tmp, argv, cfg, folder


def evaluate_decisions(cfg, source: str, method: str):
    """What evaluate's rule decides on test: accepted and predicted class, from rules.json and the logits."""
    rules = json.loads((cfg.out_dir / "evaluation" / "rules.json").read_text())
    rule = next(r for r in rules["rules"][source][method] if r["rate"] == RATE)
    f = read_logits(split_file(RunStages(cfg).source(source).folder, "test"))
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
        # written to 4 significant digits: each weight is within 5e-5 of its value
        assert all(abs(sum(r["gate_weights"].values()) - 1) <= 5e-5 * len(r["gate_weights"]) for r in rows)


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
    assert torch.is_tensor(
        inputs.decode(folder / "0000.png", read_preprocess(RunStages(cfg).splits().file(PREPROCESS)))
    )


def test_oversized_images_are_skipped_before_decoding_and_the_rest_predicted(trained, capsys, monkeypatch):

    tmp, argv, cfg, folder = trained
    mixed = tmp / "oversized"
    mixed.mkdir()
    (mixed / "0000.png").write_bytes((folder / "0000.png").read_bytes())
    Image.new("L", (100, 100)).save(mixed / "big.png")  # decoded, it would be a size mismatch: a whole-run error
    Image.new("L", (8, 2000)).save(mixed / "bomb.png")
    monkeypatch.setattr(decode, "MAX_IMAGE_PIXELS", 1000)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 6000)  # Pillow refuses bomb.png itself (above 2 * 6000)
    out = tmp / "oversized.csv"
    assert predict.main(argv + [str(mixed), "--out", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 2 and "0000.png" in out.read_text()
    err = capsys.readouterr().err
    assert "big.png is 100x100 pixels (10,000), more than the 1,000 that argse decodes" in err
    assert (
        "bomb.png declares more than 12,000 pixels (Pillow's limit, twice PIL.Image.MAX_IMAGE_PIXELS), a likely" in err
    )
    assert cli.run(predict.main, argv + [str(mixed / "big.png"), "--out", str(tmp / "none.csv")]) == 2
    assert "no image of " in (err := capsys.readouterr().err) and "nothing was written" in err
    assert not (tmp / "none.csv").exists()  # an empty file and exit 0 would read as a success


def test_high_bit_depth_images_are_scaled_to_8_bits(trained, tmp_path):
    tmp, argv, cfg, folder = trained
    prep = read_preprocess(RunStages(cfg).splits().file(PREPROCESS))
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    Image.fromarray(grey).save(tmp_path / "8.png")
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "16.png")  # 255 -> 65535
    Image.fromarray(grey.astype(np.float32) / 255).save(tmp_path / "f.tif")
    expected = inputs.decode(tmp_path / "8.png", prep)
    assert torch.equal(inputs.decode(tmp_path / "16.png", prep), expected)
    assert torch.equal(inputs.decode(tmp_path / "f.tif", prep), expected)
    with Image.open(tmp_path / "16.png") as im:  # eval_image takes any mode too
        assert torch.equal(eval_image(prep, im), expected)
    Image.fromarray(np.full((8, 8), 2.5, np.float32)).save(tmp_path / "hot.tif")
    with pytest.raises(ArgseError, match=r"hot.tif holds floating-point values from 2.5 to 2.5; argse reads float"):
        inputs.decode(tmp_path / "hot.tif", prep)


def test_every_suffix_pillow_opens_and_list_paths_with_spaces(trained, capsys):
    tmp, argv, cfg, folder = trained
    assert {".jfif", ".png", ".tiff"} <= inputs.IMAGE_SUFFIXES and ".txt" not in inputs.IMAGE_SUFFIXES
    odd = tmp / "odd names"
    odd.mkdir()
    with Image.open(folder / "0000.png") as im:
        im.save(odd / "a photo.jfif", format="JPEG")
    out = tmp / "odd.csv"
    assert predict.main(argv + [str(odd), "--out", str(out)]) == 0
    assert "a photo.jfif" in out.read_text()
    listing = tmp / "spaces.txt"
    listing.write_text("odd names/a photo.jfif 3\nodd names/a photo.jfif\n")
    assert predict.main(argv + [str(listing), "--out", str(out)]) == 0
    assert out.read_text().count("odd names/a photo.jfif,") == 2
    listing.write_bytes("caf\xe9.png 1\n".encode("latin-1"))
    assert cli.run(predict.main, argv + [str(listing)]) == 2
    assert "list file " in (err := capsys.readouterr().err) and "is not UTF-8 text (byte 0xe9 at offset 3)" in err


@pytest.mark.parametrize("size", ["0", "-1"])
def test_batch_size_below_one_is_one_sentence(trained, capsys, size):
    tmp, argv, cfg, folder = trained
    assert cli.run(predict.main, argv + [str(folder / "0000.png"), "--batch-size", size]) == 2
    assert f"--batch-size must be at least 1 (images per batch), got {size}" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d, img: d / "a folder", "is a folder; give a file path such as"),
        (lambda d, img: d / "missing" / "p.csv", "folder .*missing does not exist; create it first"),
        (lambda d, img: d / "fifo", r"is not a regular file \(a device, pipe or socket\)"),
        (lambda d, img: d / "link.csv", "is a symbolic link, which would be replaced by a file"),
        (lambda d, img: img, "is the input .*0000.png, which would be overwritten"),
    ],
)
def test_out_never_replaces_anything_but_a_regular_file_nor_an_input(trained, tmp_path, capsys, make, message):
    tmp, argv, cfg, folder = trained
    image = tmp_path / "0000.png"
    image.write_bytes((folder / "0000.png").read_bytes())
    (tmp_path / "a folder").mkdir()
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "kept.csv").write_text("kept\n")
    (tmp_path / "link.csv").symlink_to(tmp_path / "kept.csv")
    before = {p.name: (p.lstat().st_mode, p.read_bytes() if p.is_file() else None) for p in tmp_path.iterdir()}
    assert cli.run(predict.main, argv + [str(image), "--out", str(make(tmp_path, image))]) == 2
    assert re.search(f"--out .*{message}", capsys.readouterr().err)
    assert {p.name: (p.lstat().st_mode, p.read_bytes() if p.is_file() else None) for p in tmp_path.iterdir()} == before


# ---------------------------------------------------------------- outputs, top-k, class names, labels


def _csv(path):
    import csv

    return list(csv.DictReader(path.open()))


def test_default_output_goes_beside_the_run_whatever_the_current_folder(trained, tmp_path, monkeypatch, capsys):
    tmp, argv, cfg, folder = trained
    monkeypatch.chdir(tmp_path)
    assert predict.main(argv + [str(folder / "0000.png")]) == 0
    out = cfg.out_dir / "predictions" / "0000.csv"
    assert out.is_file() and not list(tmp_path.iterdir())
    said = capsys.readouterr().out
    assert f"written: {out}" in said.replace("\n", "") and "the run takes 8x8 images, taken as they are" in said


def test_top_k_lists_the_most_probable_classes_and_floats_are_short(trained, tmp_path):
    tmp, argv, cfg, folder = trained
    out = tmp_path / "top.jsonl"
    assert predict.main(argv + [str(folder), "--top-k", "3", "--format", "jsonl", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    full = tmp_path / "full.jsonl"
    assert (
        predict.main(argv + [str(folder), "--top-k", "4", "--digits", "0", "--format", "jsonl", "--out", str(full)])
        == 0
    )
    exact = [json.loads(line) for line in full.read_text().splitlines()]
    for r, e in zip(rows, exact, strict=True):
        probs = [t["probability"] for t in e["top"]]
        assert len(r["top"]) == 3 and probs == sorted(probs, reverse=True) and sum(probs) == pytest.approx(1)
        assert [t["class"] for t in r["top"]] == [t["class"] for t in e["top"][:3]]
        assert all(float(f"{p:.4g}") == t["probability"] for p, t in zip(probs, r["top"], strict=False))
        assert r["score"] == float(f"{e['score']:.4g}") and r["decision"] == e["decision"]
    assert any(len(repr(e["score"])) > 8 for e in exact)  # full precision really is longer
    csv_out = tmp_path / "top.csv"
    assert predict.main(argv + [str(folder / "0000.png"), "--top-k", "2", "--out", str(csv_out)]) == 0
    row = _csv(csv_out)[0]
    assert row["top1_class"] == exact[0]["top"][0]["class"] and "top2_probability" in row
    assert all(
        len(Decimal(row[k]).normalize().as_tuple().digits) <= 4 for k in ("probability", "score", "top1_probability")
    )


def test_class_name_file_names_the_classes(trained, tmp_path, capsys):
    tmp, argv, cfg, folder = trained
    names = tmp_path / "names.txt"
    names.write_text("cat\ndog\nemu\nyak\n\n")
    out = tmp_path / "named.csv"
    assert predict.main(argv + [str(folder), "--classes", str(names), "--out", str(out)]) == 0
    plain = tmp_path / "plain.csv"
    assert predict.main(argv + [str(folder), "--out", str(plain)]) == 0
    animals = ["cat", "dog", "emu", "yak"]
    assert [r["class"] for r in _csv(out)] == [animals[int(r["class"].split("_")[1])] for r in _csv(plain)]
    for text, message in [("cat\ndog\n", r"has 2 lines but the run has 4 classes; give one name per line"),
                          ("cat\ndog\ncat\nyak\n", r"'cat' is on lines 1 and 3; class names must differ"),
                          ("cat\n\nemu\nyak\n", r"line 2 is empty; give every class a name")]:  # fmt: skip
        names.write_text(text)
        assert cli.run(predict.main, argv + [str(folder / "0000.png"), "--classes", str(names)]) == 2
        assert re.search(message, capsys.readouterr().err)


def test_a_labelled_list_is_scored_as_evaluate_decided(trained, tmp_path, capsys):
    tmp, argv, cfg, folder = trained
    labels = prepare_data(cfg).held_out["test"].labels.tolist()
    listing = tmp_path / "labelled.txt"
    listing.write_text("".join(f"{folder / f'{i:04d}.png'} {y}\n" for i, y in enumerate(labels)))
    out = tmp_path / "scored.csv"
    assert predict.main(argv + [str(listing), "--source", "ce", "--method", "plugin_balanced", "--out", str(out)]) == 0
    accepted, pred = evaluate_decisions(cfg, "ce", "plugin_balanced")
    right = pred == np.asarray(labels)
    rows = _csv(out)
    assert [r["label"] for r in rows] == [str(y) for y in labels] and [
        r["correct"] == "True" for r in rows
    ] == right.tolist()
    said = capsys.readouterr().out.replace("\n", "")
    assert f"accuracy {right.mean():.4f} over all {len(labels)}, coverage {accepted.mean():.4f}, " in said
    assert f"selective error {1 - right[accepted].mean():.4f} (errors among the accepted)" in said
    listing.write_text(f"{folder / '0000.png'} 9\n")
    assert cli.run(predict.main, argv + [str(listing)]) == 2
    assert re.search(r"line 1: label 9 is not a class of this run \(0 to 3\)", capsys.readouterr().err)


def test_labels_on_some_lines_only_are_not_scored_and_say_so(trained, tmp_path, capsys):
    tmp, argv, cfg, folder = trained
    listing = tmp_path / "some.txt"
    listing.write_text(f"{folder / '0000.png'} 1\n{folder / '0001.png'}\n")
    assert predict.main(argv + [str(listing), "--out", str(tmp_path / "s.csv")]) == 0
    captured = capsys.readouterr()
    assert "1 of 2 lines of " in captured.err and "none is scored (label every line)" in captured.err
    assert "labelled:" not in captured.out and "label" not in _csv(tmp_path / "s.csv")[0]


# ---------------------------------------------------------------- the Python API


def test_python_api_matches_the_command_on_pil_images_and_tensors(trained, tmp_path):
    tmp, argv, cfg, folder = trained
    out = tmp_path / "cli.jsonl"
    assert predict.main(argv + [str(folder), "--format", "jsonl", "--digits", "0", "--out", str(out)]) == 0
    expected = [json.loads(line) for line in out.read_text().splitlines()]
    team = inference.load(cfg.out_dir, rate=RATE)  # the run's folder: its config.yaml is read
    assert team.rule.source == "gating" and team.input_size == "8x8 images, taken as they are"
    files = sorted(folder.glob("*.png"))
    pil = [Image.open(p) for p in files]
    uint8 = torch.stack([torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1) for im in pil])
    strip = lambda rows: [{k: v for k, v in r.items() if k != "path"} for r in rows]  # noqa: E731
    assert team.predict(pil) == strip(expected)
    assert team.predict(uint8) == strip(expected)
    one, first = team.predict(pil[0])[0], expected[0]  # a batch of one: float32 sums in another order
    assert [one] == team.predict(uint8[0]) and (one["class"], one["decision"]) == (first["class"], first["decision"])
    assert one["gate_weights"] == pytest.approx(first["gate_weights"], rel=1e-5)
    assert [one[k] for k in ("probability", "score")] == pytest.approx(
        [first[k] for k in ("probability", "score")], rel=1e-5
    )
    as_float = team.predict(uint8.float() / 255)  # torchvision's ToTensor scale
    assert [r["decision"] for r in as_float] == [r["decision"] for r in expected]
    assert [r["class"] for r in team.predict(uint8, top_k=2)] == [r["class"] for r in expected]


def test_python_api_refuses_what_the_models_cannot_take_in_one_sentence(trained):
    tmp, argv, cfg, folder = trained
    team = inference.load(
        None, rate=RATE, method="plugin_balanced", source="ce", overrides=[a for a in argv if a != "--set"]
    )
    for images, message in [
        (torch.zeros(2, 3, 16, 16, dtype=torch.uint8), r"^the images are 16x16 pixels but the models of this run take 8x8"),
        (torch.zeros(2, 8, 8, dtype=torch.uint8), r"^images must be a \[N, 3, H, W\] or \[3, H, W\] RGB tensor, got shape \[2, 8, 8\]"),
        (torch.full((1, 3, 8, 8), 2.0), r"^a torch.float32 image tensor must be uint8 \(0-255\) or floating point in \[0, 1\]"),
        ([Image.new("RGB", (9, 8))], r"^image 0 is 9x8 pixels but the models of this run take 8x8"),
        (None, r"^images must be PIL images or an image tensor, got NoneType; open files with PIL.Image.open"),
        ("a.png", r"^images must be PIL images or an image tensor, got str"),
        (np.zeros((2, 8, 8, 3), np.uint8), r"^images must be PIL images or an image tensor, got a numpy array; for"),
        ([Image.new("RGB", (8, 8)), "b.png"], r"^images\[1\] is a str, not a PIL image"),
        (5, r"^images must be PIL images or an image tensor, got int$"),
    ]:  # fmt: skip
        with pytest.raises(ArgseError, match=message):
            team.predict(images)
    # An empty batch is no rows, and empty scores of the run's widths.
    assert team.predict([]) == [] and team.predict(torch.zeros(0, 3, 8, 8, dtype=torch.uint8)) == []
    assert team.scores([]).source.shape == (0, len(team.classes))
    with pytest.raises(ArgseError, match=r"^top_k must be a whole number in \[1, 4\] \(the run's classes\), got '2'"):
        team.predict(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), top_k="2")
    sets = [a for a in argv if a != "--set"]
    for kwargs, message in [
        ({"rate": "a"}, "argument 'rate' must be a number, got 'a'"),
        ({"rate": float("nan")}, "argument 'rate' must be a finite number, got nan"),
        ({"rate": 1.0}, "argument 'rate' must be < 1, got 1.0"),
        ({"method": 5}, "argument 'method' must be a string, got 5"),
        ({"overrides": "seed=1"}, "argument 'overrides' must be a list, got 'seed=1'"),
        ({"classes": 3}, "argument 'classes' must be a string, got 3"),
    ]:
        with pytest.raises(ArgseError) as exc:
            inference.load(None, **({"overrides": sets} | kwargs))
        assert str(exc.value).startswith(message), str(exc.value)
    with pytest.raises(ArgseError, match=r"is a folder without config.yaml"):
        inference.load(tmp)


def test_the_docs_scores_example_runs_as_written(trained, capsys):
    """docs/predict.md's example, run as written with RUN and IMAGES pointed at the tiny run."""
    tmp, argv, cfg, folder = trained
    page = (REPO / "docs" / "predict.md").read_text()
    code = page.split("<!-- example: scores -->\n```python\n", 1)[1].split("```", 1)[0]
    mine = code.replace(
        'RUN, IMAGES = "outputs/demo", "images"', f"RUN, IMAGES = {str(cfg.out_dir)!r}, {str(folder)!r}"
    )
    assert mine != code
    exec(compile(mine, "docs/predict.md", "exec"), {})  # noqa: S102  (the docs' own example)
    out = capsys.readouterr().out.splitlines()
    classes = len(prepare_data(cfg).classes)
    assert out[0] == f"torch.Size([4, {classes}])" and out[1].startswith("ce [") and "torch.float32" in out
    assert out[out.index("torch.float32") + 1].startswith("tensor([[")  # the gate's weights: the rule is gating's


def test_scores_agree_with_the_exported_logits(trained):
    tmp, argv, cfg, folder = trained
    team = inference.load(cfg.out_dir, rate=RATE, method="plugin_worst")
    images = [Image.open(p) for p in sorted(folder.glob("*.png"))]
    scores = team.scores(images)
    exported = read_logits(split_file(RunStages(cfg).source("ce").folder, "test"))
    assert torch.allclose(scores.logits["ce"], exported.logits, atol=1e-4)
    assert set(team.networks) == set(scores.logits) == {"ce", "logit_adjust", "posthoc_adjust"}
    assert scores.gate_weights.shape == (len(images), 3) and torch.allclose(
        scores.gate_weights.sum(1), torch.ones(1).double()
    )


def test_predict_loads_the_plugins_the_run_recorded(tmp_path):
    """The run's outputs/NAME/config.yaml names its plugins; predict imports them though its own config omits them."""
    cfg = load_run_config(None, [f"output_dir={tmp_path}", "name=r"])
    cfg.out_dir.mkdir(parents=True)
    (cfg.out_dir / "config.yaml").write_text("plugins: [tests.plugins.raises_at_import]\n")
    with pytest.raises(ArgseError, match=r"^plugin module 'tests\.plugins\.raises_at_import' could not be imported"):
        open_predictor(cfg, None, "chow", 0.2)


def test_predict_without_a_config_lists_the_runs_there_are(tmp_path, monkeypatch, capsys):
    for name in ("b", "a"):
        (tmp_path / "outputs" / name).mkdir(parents=True)
        (tmp_path / "outputs" / name / "config.yaml").write_text("name: x\n")
    monkeypatch.chdir(tmp_path)
    assert cli.run(predict.main, [str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert (
        "run " in err and "outputs/default does not exist; runs in " in err and ": a, b; give one with --config" in err
    )


def test_predict_reads_only_regular_files_and_splits_names_at_newlines_only(trained, tmp_path):
    import os

    tmp, argv, cfg, folder = trained
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)  # opened, it would block forever
    with pytest.raises(ImageError, match=r"is not a regular file \(a folder, pipe or device\)"):
        inputs.decode(fifo, None)
    os.mkfifo(tmp_path / "list.txt")
    with pytest.raises(ArgseError, match=r"^list file .*list\.txt is not a regular file"):
        inputs.read_inputs(tmp_path / "list.txt")
    names = ["a\u0085b", "c", "d", "e"][: len(prepare_data(cfg).classes)]
    (tmp_path / "names.txt").write_text("\n".join(names) + "\n")
    assert team_module.read_classes(tmp_path / "names.txt", len(names)) == names  # U+0085 is no line break
    for bad, message in [(tmp_path / "missing.txt", r"does not exist$"), (tmp_path, r"is not a regular file")]:
        with pytest.raises(ArgseError, match=r"^class-name file .*" + message):
            team_module.read_classes(bad, len(names))


def test_python_api_refuses_non_finite_pixels_and_a_top_k_above_the_classes(trained):
    tmp, argv, cfg, folder = trained
    team = inference.load(cfg.out_dir, rate=RATE)
    x = torch.full((1, 3, 8, 8), 0.5)
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(ArgseError, match=r"^the image tensor holds NaN or infinite values"):
        team.predict(x)
    k = len(team.classes)
    with pytest.raises(
        ArgseError, match=rf"^top_k must be a whole number in \[1, {k}\] \(the run's classes\), got {k + 1}$"
    ):
        team.predict(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), top_k=k + 1)


def test_predict_with_a_guaranteed_risk_uses_the_ladder_s_rule_or_says_why_not(trained, tmp_path, capsys):
    """--risk picks the rule of largest coverage that meets the target on the evaluation's ladder (the same rule
    the Python API picks); a risk no rule can promise, or a malformed one, is one sentence."""
    from argse.selective.guarantee import Guarantee, Rung, select

    tmp, argv, cfg, folder = trained
    rules = json.loads((cfg.out_dir / "evaluation" / "rules.json").read_text())
    rungs = [Rung.of_record(r) for r in rules["ladders"]["ce"]["plugin_worst"]]
    target = Guarantee((0.99,), 0.9, "balanced")
    chosen = select(rungs, target).rung
    assert chosen is not None  # a lenient target is met even on the tiny run's few samples
    out = tmp_path / "g.jsonl"
    base = argv + [str(folder), "--source", "ce", "--method", "plugin_worst", "--format", "jsonl", "--digits", "0"]
    assert predict.main(base + ["--risk", "0.99", "--delta", "0.9", "--risk-of", "balanced", "--out", str(out)]) == 0
    assert "balanced error at most 0.99 with probability 0.1" in capsys.readouterr().out
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r["threshold"] for r in rows} == {chosen.rule.t}
    api = inference.load(cfg.out_dir, source="ce", method="plugin_worst", risk=0.99, delta=0.9, risk_of="balanced")
    assert api.rule.t == chosen.rule.t and np.array_equal(api.rule.alpha, chosen.rule.alpha)
    as_numpy = inference.load(cfg.out_dir, source="ce", method="plugin_worst", risk=np.float32(0.99), delta=0.9,
                              risk_of="balanced")  # fmt: skip
    assert as_numpy.rule.t == chosen.rule.t
    for kwargs, message in [
        ({"risk": "abc"}, "argument 'risk' must be a list, got 'abc'"),
        ({"risk": 0.3, "delta": 0}, "argument 'delta' must be > 0, got 0"),
        ({"risk": 0.3, "risk_of": "mean"}, "argument 'risk_of' is 'mean'; choose one of"),
        ({"risk": 0.1, "risk_of": "groups"}, "the guarantee gives 1 risk(s) for the run's 2 groups"),
    ]:
        with pytest.raises(ArgseError) as exc:
            inference.load(cfg.out_dir, source="ce", method="plugin_worst", **kwargs)
        assert message in str(exc.value), str(exc.value)
    for extra, message in [
        (["--risk", "0.001"], "no rule of ce / plugin_worst meets worst-group error at most 0.001 with probability "
                              "0.95 on the fitting sample (the smallest it can guarantee at this delta is"),
        (["--risk", "0.1", "--rate", "0.2"], "--rate and --risk both choose the rule; give one"),
        (["--risk", "abc"], "--risk takes a number or a comma list of numbers, got 'abc'"),
        (["--risk", "1.5"], "a guaranteed risk must lie in (0, 1), got 1.5"),
        (["--risk", "0.1,0.2"], "risk_of worst takes one risk, got 2"),
        (["--risk", "0.1,0.2,0.3", "--risk-of", "groups"], "the guarantee gives 3 risk(s) for the run's 2 groups"),
    ]:  # fmt: skip
        assert cli.run(predict.main, base + extra) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda r: r["ladders"]["ce"]["plugin_worst"][0].__setitem__("test_coverage", [1.5, 1.0]), "test_coverage"),
        (
            lambda r: r["ladders"]["ce"]["plugin_worst"][0].__setitem__("plan_errors", [0.1, 0.1, 0.1]),
            "ladders.ce.plugin_worst[0] does not hold one value per group (2)",
        ),
        (lambda r: r["ladders"]["ce"]["plugin_worst"][0].pop("t"), "has no field 'ladders.ce.plugin_worst[0].t'"),
        (lambda r: r.__setitem__("ladders", []), "ladders"),
    ],
)
def test_a_rules_file_s_ladders_are_checked_whole(trained, tmp_path, change, message):
    """Past the stage's digest (a file copied elsewhere), rules.json's candidate rules are still checked field by
    field: one sentence naming the field."""
    from argse.reports.rules_file import read_rules

    tmp, argv, cfg, folder = trained
    rules = json.loads((cfg.out_dir / "evaluation" / "rules.json").read_text())
    change(rules)
    (tmp_path / "rules.json").write_text(json.dumps(rules))
    with pytest.raises(ArgseError) as exc:
        read_rules(tmp_path)
    assert message in str(exc.value) and "rerun python -m argse.evaluate" in str(exc.value), str(exc.value)
