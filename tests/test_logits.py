import json

import pytest
import torch
from safetensors.torch import save_file

from argse.core.errors import ArgseError
from argse.data.logits import FORMAT, read_logit_set, read_logits, run_folders, run_manifest, split_file, write_logits


def _write(path, n=6, c=3, indices=None, **changes):
    kw = dict(
        expert="ce",
        dataset="synthetic_lt",
        split="test",
        temperature=1.5,
        class_counts=[10, 5, 2],
        splits_sha256="abc",
        config={"lr": 0.1},
    )
    kw.update(changes)
    g = torch.Generator().manual_seed(0)
    indices = torch.arange(n) + 100 if indices is None else indices
    return write_logits(path, torch.randn(n, c, generator=g), torch.arange(n) % c, indices, **kw)


def test_round_trip(tmp_path):
    f = read_logits(_write(tmp_path / "a.safetensors"))
    assert f.logits.shape == (6, 3) and f.temperature == 1.5 and f.class_counts == [10, 5, 2]
    assert torch.allclose(f.probs.sum(1), torch.ones(6, dtype=torch.float64))
    assert torch.allclose(f.calibrated, f.logits / 1.5)


def _raw(path, tensors, **meta):
    base = {
        "format": FORMAT,
        "expert": "ce",
        "dataset": "d",
        "split": "test",
        "num_classes": "3",
        "temperature": "1.0",
        "class_counts": json.dumps([1, 1, 1]),
        "splits_sha256": "x",
        "config": "{}",
        "argse_version": "0",
    }
    save_file(tensors, str(path), metadata=base | meta)
    return path


GOOD = {"logits": torch.zeros(2, 3), "labels": torch.tensor([0, 1]), "indices": torch.tensor([5, 6])}


@pytest.mark.parametrize(
    "tensors,meta,match",
    [
        (GOOD, {"format": "other/1"}, r"field 'format' is 'other/1', expected 'argse.logits/1'"),
        (GOOD | {"logits": torch.zeros(2, 3, dtype=torch.float64)}, {}, r"field 'logits' has dtype torch.float64"),
        (GOOD | {"labels": torch.tensor([0, 1], dtype=torch.int32)}, {}, r"field 'labels' has dtype torch.int32"),
        (GOOD | {"logits": torch.zeros(2, 4)}, {}, r"field 'logits' has shape \(2, 4\), expected \(2, 3\)"),
        (GOOD | {"logits": torch.tensor([[0.0, float("nan"), 0.0]] * 2)}, {}, r"field 'logits' contains NaN"),
        (GOOD, {"temperature": "-1"}, r"field 'temperature': must be in \[0.05, 20\], .* got '-1'"),
        (GOOD, {"temperature": "inf"}, r"field 'temperature': input should be a finite number, got 'inf'"),
        (GOOD, {"temperature": "1e-300"}, r"field 'temperature': must be in \[0.05, 20\], .* got '1e-300'"),
        (GOOD, {"temperature": "warm"}, r"field 'temperature': input should be a valid number"),
        (GOOD, {"class_counts": '{"a": 1}'}, r"field 'class_counts': input should be a valid list"),
        (GOOD, {"class_counts": "[1, 1]"}, r"class_counts has 2 entries, expected 3"),
        (GOOD, {"config": "[1]"}, r"field 'config': input should be a valid dictionary"),
        (GOOD, {"num_classes": "0"}, r"field 'num_classes': input should be greater than or equal to 1, got '0'"),
    ],
)
@pytest.mark.parametrize("rows_on_disk", [False, True])
def test_bad_files_name_the_file_and_field(tmp_path, tensors, meta, match, rows_on_disk):
    """The same sentence whether the logits are loaded or left on disk (read a block at a time, each checked)."""
    with pytest.raises(ArgseError, match=match):
        f = read_logits(_raw(tmp_path / "bad.safetensors", tensors, **meta), rows_on_disk=rows_on_disk)
        f.rows(0, 1), f.rows(1, 2)


@pytest.mark.parametrize("rows_on_disk", [False, True])
def test_corrupt_file(tmp_path, rows_on_disk):
    (tmp_path / "x.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(ArgseError, match="is corrupt or not a safetensors file"):
        read_logits(tmp_path / "x.safetensors", rows_on_disk=rows_on_disk)


def test_rows_on_disk_are_the_file_s_rows(tmp_path):
    path = _write(tmp_path / "a.safetensors", n=11)
    whole, lazy = read_logits(path), read_logits(path, rows_on_disk=True)
    assert lazy.logits.is_meta and lazy.logits.shape == whole.logits.shape and torch.equal(lazy.labels, whole.labels)
    for start, stop in [(0, 4), (4, 8), (8, 11), (8, 20)]:
        assert torch.equal(lazy.rows(start, stop), whole.logits[start:stop])
        assert torch.equal(lazy.log_probs(start, stop), torch.log_softmax(whole.calibrated.double(), 1)[start:stop])
    _write(path, n=10)  # replaced since it was checked: refused, not read short
    with pytest.raises(ArgseError, match=r"field 'logits' changed on disk while it was read"):
        lazy.rows(8, 11)


def test_siblings_must_agree(tmp_path):
    a = _write(tmp_path / "a.safetensors")
    b = _write(tmp_path / "b.safetensors", splits_sha256="other")
    with pytest.raises(ArgseError, match=r"b.safetensors: field 'splits_sha256' differs from .*a.safetensors"):
        read_logit_set([a, b])
    c = _write(tmp_path / "c.safetensors", indices=torch.arange(6) + 101)
    with pytest.raises(ArgseError, match=r"c.safetensors: field 'indices' differs"):
        read_logit_set([a, c])


# ---------------------------------------------------------------- one source against its run


def _run(tmp_path, name="r"):
    from studies.logit_factory import write_run

    out = tmp_path / name
    write_run(out, {"ce": lambda labels, g: torch.randn(len(labels), 4, generator=g)}, 4, [100, 50, 10, 5])
    return out


def _rewrite(path, **changes):
    f = read_logits(path)
    tensors = {k: changes.pop(k, getattr(f, k)) for k in ("logits", "labels", "indices")}
    meta = dict(
        expert=f.expert,
        dataset=f.dataset,
        split=f.split,
        temperature=f.temperature,
        class_counts=f.class_counts,
        splits_sha256=f.splits_sha256,
        config=f.config,
    )
    write_logits(path, **tensors, **(meta | changes))  # through the run's logits/<name> link: into its stage


def _one_label_changed(f):
    labels = f.labels.clone()
    labels[7] = (labels[7] + 1) % 4
    return {"labels": labels}


def _shuffled(f):
    order = torch.randperm(len(f.labels), generator=torch.Generator().manual_seed(0))
    return {"logits": f.logits[order], "labels": f.labels[order], "indices": f.indices[order]}


@pytest.mark.parametrize(
    "breakage, field",
    [
        ("val copied over test", "split"),
        ("another run's file", "splits_sha256"),
        ("one label changed", "labels"),
        ("rows shuffled", "indices"),
        ("10 rows removed", "indices"),
    ],
)
def test_a_single_source_is_checked_against_its_run(tmp_path, breakage, field):
    from argse.config.loading import load_run_config
    from argse.data.logits import load_sources
    from argse.stages.run import RunStages

    out = _run(tmp_path)
    folders, manifest = run_folders(out, ["ce"]), run_manifest(out)
    test = split_file(folders["ce"], "test")
    f = read_logits(test)
    if breakage == "val copied over test":
        test.write_bytes(split_file(folders["ce"], "val").read_bytes())
        stages = RunStages(load_run_config(None, [f"output_dir={tmp_path}", "name=r", "experts=[ce]"]))
        stage = stages.expert("ce")
        with pytest.raises(ArgseError, match=r"test.safetensors is not the file its stage was published with"):
            stages.store.verify(stage)  # the stage's record tells...
        stages.store.verify(stage, ["val.safetensors", "tune.safetensors"])  # (the other files are untouched)
        # ...and a reader, which checks no digests, is stopped by the manifest
    elif breakage == "another run's file":
        _rewrite(test, splits_sha256="0" * 64)  # what a file of another run's splits carries
    elif breakage == "one label changed":
        _rewrite(test, **_one_label_changed(f))
    elif breakage == "rows shuffled":
        _rewrite(test, **_shuffled(f))
    else:
        _rewrite(test, logits=f.logits[10:], labels=f.labels[10:], indices=f.indices[10:])
    with pytest.raises(ArgseError, match=rf"logits file .*test.safetensors: field '{field}' does not match the run's"):
        load_sources(folders, ["tune", "test"], manifest)


def test_a_source_without_its_run_manifest_is_refused(tmp_path):
    from argse.data.logits import load_sources

    out = _run(tmp_path)
    run_manifest(out).unlink()
    with pytest.raises(ArgseError, match=r"split manifest .*splits.json does not exist"):
        load_sources(run_folders(out, ["ce"]), ["test"], run_manifest(out))
