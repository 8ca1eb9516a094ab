"""Side files trusted as read no more: every field a reader uses is checked, and a damaged file is one
sentence naming the file and the field, even when its stage was published with it (a writer with a bug)."""

from __future__ import annotations

import hashlib
import json

import pytest
from PIL import Image

from argse import cli, predict, train_experts, train_gating
from argse import evaluate as evaluate_cmd
from argse.config.loading import load_run_config
from argse.data.long_tail import prepare_data
from argse.stages.store import RECORD
from tests.conftest import tiny_overrides

TEAM = "ce,logit_adjust"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("side")
    sets = tiny_overrides(tmp, **{"experts": f"[{TEAM}]", "gating.epochs": "5"})
    argv = [x for s in sets for x in ("--set", s)]
    assert train_experts.main(argv + ["--experts", TEAM]) == 0
    assert train_gating.main(argv + ["--experts", TEAM]) == 0
    assert evaluate_cmd.main(argv + ["--sources", f"{TEAM},gating"]) == 0
    cfg = load_run_config(None, sets)
    image = tmp / "a.png"
    Image.fromarray(prepare_data(cfg).held_out["test"].images[0].permute(1, 2, 0).numpy()).save(image)
    files = {p: p.read_bytes() for p in (cfg.out_dir / "stages").rglob("*") if p.is_file()}
    return argv, cfg, image, files


def _rule(d):
    return d["rules"]["gating"]["plugin_worst"][4]


CASES = [
    ("evaluation/rules.json", lambda d: d.pop("class_group"), "has no field 'class_group'"),
    ("evaluation/rules.json", lambda d: _rule(d).update(alpha=_rule(d)["alpha"][:1]), r"rules.gating.plugin_worst\[4\] has 1 alpha and 2 b for 2 groups"),
    ("evaluation/rules.json", lambda d: [r.update(rate="0.2") for r in d["rules"]["gating"]["plugin_worst"]],
     r"field 'rules.gating.plugin_worst\[0\].rate': input should be a valid number, got '0.2'"),
    ("evaluation/rules.json", lambda d: _rule(d).update(t=float("nan")), r"plugin_worst\[4\].t': input should be a finite number, got nan"),
    ("evaluation/rules.json", lambda d: d.update(class_group=[0, 5, 1, 1]), "class_group names group 5, but there are 2 groups"),
    ("preprocess.json", lambda d: d.update(mean=[0.5, 0.5]), "field 'mean': list should have at least 3 items"),
    ("preprocess.json", lambda d: d.update(std=[0, 0, 0]), r"field 'std\[0\]': input should be greater than 0, got 0"),
    ("preprocess.json", lambda d: d.update(std=[float("nan")] * 3), r"field 'std\[0\]': input should be a finite number"),
    ("preprocess.json", lambda d: d.update(image_size=None), "without image_size, resize and crop must both be given"),
    ("gating/gate.json", lambda d: d["config"].update(top_k=0), r"field 'config.top_k': input should be greater than or equal to 1"),
]  # fmt: skip


@pytest.mark.parametrize(("rel", "damage", "message"), CASES)
def test_a_damaged_side_file_is_one_sentence_even_when_published(run, capsys, rel, damage, message):
    argv, cfg, image, files = run
    for p, b in files.items():  # every case starts from the run as it was written
        p.write_bytes(b)
    path = (cfg.out_dir / rel).resolve()  # the file in its stage (outputs/NAME/<rel> leads there)
    record = json.loads(path.read_text())
    damage(record)
    path.write_text(json.dumps(record))
    # published so, as by a writer with a bug: the record lists the file's bytes, under the content the stages
    # downstream were keyed by (a changed content would be other data, for which nothing downstream is found)
    stage = json.loads((path.parent / RECORD).read_text())
    stage["files"][path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
    (path.parent / RECORD).write_text(json.dumps(stage))
    capsys.readouterr()
    assert cli.run(predict.main, argv + [str(image), "--out", str(image.with_suffix(".csv"))]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and __import__("re").search(message, err), err
