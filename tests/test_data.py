import io
import tarfile

import pytest
import torch
from rich.console import Console

from argse.config.loading import load_run_config
from argse.core import storage
from argse.core.errors import ArgseError
from argse.data.long_tail import prepare_data
from argse.data.metrics import lt_weights
from argse.data.splits import lt_counts, manifest_sha256, read_manifest, write_manifest
from argse.stages.experts import publish_splits
from argse.stages.run import RunStages

QUIET = Console(quiet=True)


def _splits(cfg):
    """The split stage of ``cfg``, published as train_experts does before any expert trains (or found)."""
    return publish_splits(RunStages(cfg), prepare_data(cfg), QUIET)


def test_cifar100_lt_profile_matches_published_counts():
    counts = lt_counts(500, 100, 100)
    assert sum(counts) == 10847 and counts[0] == 500 and counts[-1] == 5


def test_cifar10_lt_profile():
    counts = lt_counts(5000, 10, 100)
    assert sum(counts) == 12406 and counts[-1] == 50
    assert sum(c <= 200 for c in counts) == 3  # the CIFAR-10 tail group of docs/data.md


def test_splits_are_disjoint_seeded_and_follow_the_profile(tiny_cfg):
    d = prepare_data(tiny_cfg)
    assert d.class_counts.tolist() == lt_counts(40, 4, 10)
    assert torch.bincount(d.train.labels).tolist() == d.class_counts.tolist()
    held = [set(d.held_out[s].indices.tolist()) for s in ("val", "tune", "test")]
    assert not (held[0] & held[1] or held[0] & held[2] or held[1] & held[2])
    assert [len(d.held_out[s].labels) for s in ("val", "tune", "test")] == [16, 24, 40]  # 0.2/0.3/0.5 of 80
    again = prepare_data(tiny_cfg)
    assert again.sha256 == d.sha256 and manifest_sha256(again.manifest) == d.sha256
    assert d.groups.classes_in("tail").tolist() == [False, False, True, True]  # tail: at most 8 images
    # counts 40, 18, 8, 4: many > 30, few < 10
    assert [d.shots.size(g) for g in ("many", "medium", "few")] == [1, 1, 2]
    assert d.shots.classes_in("medium").tolist() == [False, True, False, False]


def test_groups_are_looked_up_by_name():
    from argse.data.groups import head_tail_groups, shot_groups

    groups = head_tail_groups(torch.tensor([50, 20, 21, 3]), tail_max_count=20)
    assert groups.names == ["head", "tail"] and groups.size("tail") == 2
    masks = groups.sample_masks(torch.tensor([0, 1, 3, 3]))
    assert masks["tail"].tolist() == [False, True, True, True] and masks["head"].tolist() == [True, False, False, False]
    shots = shot_groups(torch.tensor([101, 100, 20, 19]), many_min_count=100, few_max_count=20)
    assert {g: shots.classes_in(g).nonzero().flatten().tolist() for g in shots.names} == {
        "many": [0], "medium": [1, 2], "few": [3]
    }  # fmt: skip
    with pytest.raises(KeyError, match="no group 'middle' among many, medium, few"):
        shots.index("middle")


def test_changed_split_settings_are_another_split_stage(tiny):
    cfgs = [load_run_config(None, tiny), load_run_config(None, tiny + ["seed=1"])]
    first, other = _splits(cfgs[0]), _splits(cfgs[1])
    assert first.folder != other.folder  # each config finds its own manifest, and the first is kept
    assert [read_manifest(s.file("splits.json"))["seed"] for s in (first, other)] == [0, 1]
    assert manifest_sha256(read_manifest(first.file("splits.json"))) == prepare_data(cfgs[0]).sha256
    assert _splits(cfgs[0]) == first  # found again, not made anew


def test_data_changed_under_a_published_manifest_are_refused(tmp_path, tiny):
    root = _folder_tree(tmp_path / "tree")
    _splits(_folder_cfg(tmp_path, tiny, root))
    (root / "test" / "a" / "9.jpg").write_bytes(_jpeg(40))  # same settings, another held-out pool
    with pytest.raises(ArgseError, match=r"the data read now differ from the split manifest made for this config"):
        _splits(_folder_cfg(tmp_path, tiny, root))


def test_lt_weights_reweight_to_training_prior():
    labels = torch.tensor([0, 0, 1, 1])  # balanced split
    w = lt_weights(labels, torch.tensor([90, 10]))
    assert torch.allclose(w, torch.tensor([1.8, 1.8, 0.2, 0.2], dtype=torch.float64))


def _tar_with(tmp_path, files: dict[str, bytes]):
    path = tmp_path / "tree.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _jpeg(value: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (value, value, value)).save(buf, format="JPEG")
    return buf.getvalue()


def test_imagefolder_tar_is_read_and_cached(tmp_path, tiny):
    files = {
        f"root/{part}/{cls}/{i}.jpg": _jpeg(40 + 100 * k)
        for part, n in (("train", 6), ("test", 5))
        for k, cls in enumerate(["a", "b"])
        for i in range(n)
    }
    path = _tar_with(tmp_path, files)
    sets = tiny + [
        "data.dataset=imagefolder_lt",
        f"data.root={path}",
        f"data.imagefolder_lt.cache_dir={tmp_path / 'cache'}",
        "data.imbalance_factor=2",
        "data.tail_max_count=3",
    ]
    d = prepare_data(load_run_config(None, sets))
    assert d.classes == ["a", "b"] and d.class_counts.tolist() == [6, 3]
    assert list(d.train.images.shape[1:]) == [3, 8, 8]
    assert abs(float(d.train.images[d.train.labels == 1].float().mean()) - 140) < 5
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 1
    assert prepare_data(load_run_config(None, sets)).sha256 == d.sha256  # from the cache


def test_imagefolder_caches_in_the_user_s_cache_folder_from_any_folder(tmp_path, tiny, monkeypatch):
    files = {f"root/{part}/{cls}/{i}.jpg": _jpeg(40 + 100 * k)
             for part, n in (("train", 4), ("test", 4)) for k, cls in enumerate(["a", "b"]) for i in range(n)}  # fmt: skip
    path = _tar_with(tmp_path, files)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    sets = tiny + [
        "data.dataset=imagefolder_lt",
        f"data.root={path}",
        "data.imbalance_factor=2",
        "data.tail_max_count=2",
    ]
    for here in ("one", "two"):  # two current folders, one cache
        (tmp_path / here).mkdir()
        monkeypatch.chdir(tmp_path / here)
        prepare_data(load_run_config(None, sets))
    assert len(list((tmp_path / "xdg" / "argse").glob("*.safetensors"))) == 1
    assert not list((tmp_path / "one").rglob("*.safetensors")) and not list((tmp_path / "two").rglob("*"))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda t, m: (t, {k: v for k, v in m.items() if k != "classes"}), "has no argse.imagecache/1 format tag"),
        (lambda t, m: (t | {"train_labels": t["train_labels"] + 5}, m), "does not hold valid train images and labels"),
        (lambda t, m: ({k: v for k, v in t.items() if k != "test_images"}, m), "does not hold valid test images"),
    ],
)
def test_a_damaged_image_cache_is_refused_in_one_sentence(tmp_path, tiny, damage, message):
    files = {f"root/{part}/{cls}/{i}.jpg": _jpeg(40) for part in ("train", "test") for cls in "ab" for i in range(4)}
    sets = tiny + ["data.dataset=imagefolder_lt", f"data.root={_tar_with(tmp_path, files)}",
                   f"data.imagefolder_lt.cache_dir={tmp_path / 'cache'}", "data.imbalance_factor=2",
                   "data.tail_max_count=3"]  # fmt: skip
    prepare_data(load_run_config(None, sets))
    (cache,) = (tmp_path / "cache").glob("*.safetensors")
    storage.save_tensors(cache, *damage(*storage.load_tensors(cache)))
    with pytest.raises(ArgseError, match=f"image cache .* {message}.*; delete it and the next run decodes"):
        prepare_data(load_run_config(None, sets))


def test_tar_that_is_not_an_image_tree(tmp_path, tiny):
    path = _tar_with(tmp_path, {"notes/readme.txt": b"hello"})
    cfg = load_run_config(
        None,
        tiny
        + ["data.dataset=imagefolder_lt", f"data.root={path}", f"data.imagefolder_lt.cache_dir={tmp_path / 'cache'}"],
    )
    with pytest.raises(ArgseError, match="is not an image tree: expected train/<class>/<image>"):
        prepare_data(cfg)


def test_missing_cifar_names_where_to_put_it(tmp_path, tiny):
    cfg = load_run_config(
        None, tiny + ["data.dataset=cifar100_lt", f"data.root={tmp_path}", "data.cifar100_lt.download=false"]
    )
    with pytest.raises(
        ArgseError, match=r"CIFAR-100 was not found under .* put the extracted 'cifar-100-python/' folder.*\)$"
    ):
        prepare_data(cfg)
    ten = load_run_config(
        None, tiny + ["data.dataset=cifar10_lt", f"data.root={tmp_path}", "data.cifar10_lt.download=false"]
    )
    with pytest.raises(
        ArgseError, match=r"'cifar-10-batches-py/' .*--set data\.dataset=imagefolder_lt --set data\.root="
    ):
        prepare_data(ten)  # CIFAR-10 also comes as a JPEG image tree


# ---------------------------------------------------------------- image folders (issue 14)


def _folder_tree(root, counts=None, test_per_class=4):
    counts = counts or {"a": 6, "b": 6}
    for k, (cls, n) in enumerate(counts.items()):
        for part, m in (("train", n), ("test", test_per_class)):
            folder = root / part / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(m):
                (folder / f"{i}.jpg").write_bytes(_jpeg(40 + 100 * k))
    return root


def _folder_cfg(tmp_path, tiny, root, *extra):
    sets = [
        "data.dataset=imagefolder_lt",
        f"data.root={root}",
        f"data.imagefolder_lt.cache_dir={tmp_path / 'cache'}",
        "data.imbalance_factor=2",
        "data.tail_max_count=3",
    ]
    return load_run_config(None, tiny + sets + list(extra))


def test_manifest_stores_the_labels_of_every_held_out_split(tiny_cfg):
    d = prepare_data(tiny_cfg)
    for split in ("val", "tune", "test"):
        assert d.manifest["labels"][split] == d.held_out[split].labels.tolist()


def test_a_manifest_written_before_labels_were_stored_is_still_accepted(tiny_cfg, tmp_path):
    """../shared/runs/ holds one: its sha256 is in its logits files, so it stays as it is."""
    d = prepare_data(tiny_cfg)
    old = {k: v for k, v in d.manifest.items() if k != "labels"}
    path = write_manifest(tmp_path / "splits.json", old)
    again = read_manifest(path)
    assert manifest_sha256(again) == manifest_sha256(old) and "labels" not in again


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("format", "argse.splits/0", r"field 'format': input should be 'argse.splits/1', got 'argse.splits/0'"),
        ("class_counts", [1, 2], "class_counts has 2 entries for 4 classes"),
        ("splits", {"train": [0]}, "splits has no 'val'"),
        ("seed", "0", "field 'seed': input should be a valid integer, got '0'"),
    ],
)
def test_every_field_of_the_manifest_is_checked(tiny_cfg, tmp_path, field, value, message):
    d = prepare_data(tiny_cfg)
    path = tmp_path / "splits.json"
    path.write_text(__import__("json").dumps(d.manifest | {field: value}))
    with pytest.raises(ArgseError, match=message):
        read_manifest(path)


def test_split_manifest_that_is_not_utf8_is_one_sentence(tmp_path):
    path = tmp_path / "splits.json"
    path.write_bytes(b'{"format": "caf\xe9"}')
    with pytest.raises(ArgseError, match=r"split manifest .*splits\.json is not UTF-8 text \(byte 0xe9"):
        read_manifest(path)


def test_image_folder_cache_notices_a_changed_image_inside_a_class_folder(tmp_path, tiny):
    root = _folder_tree(tmp_path / "tree")
    first = prepare_data(_folder_cfg(tmp_path, tiny, root))
    image = root / "train" / "a" / "0.jpg"
    image.write_bytes(_jpeg(250))  # the root folder's own size and mtime stay the same
    again = prepare_data(_folder_cfg(tmp_path, tiny, root))
    assert not torch.equal(first.train.images, again.train.images)
    image.write_bytes(b"not a jpeg any more")
    with pytest.raises(ArgseError, match=r"train/a/0.jpg cannot be decoded .*; replace or remove it$"):
        prepare_data(_folder_cfg(tmp_path, tiny, root))


def test_image_folder_cache_notices_an_emptied_class(tmp_path, tiny):
    root = _folder_tree(tmp_path / "tree")
    prepare_data(_folder_cfg(tmp_path, tiny, root))
    for image in (root / "train" / "b").iterdir():
        image.unlink()
    with pytest.raises(ArgseError, match=r"class folder train/b holds no images; add images or remove it"):
        prepare_data(_folder_cfg(tmp_path, tiny, root))


def test_image_folder_class_only_in_test_is_an_error(tmp_path, tiny):
    root = _folder_tree(tmp_path / "tree")
    (root / "test" / "c").mkdir()
    (root / "test" / "c" / "0.jpg").write_bytes(_jpeg(10))
    with pytest.raises(ArgseError, match=r"class 'c' has test images but no train/c folder"):
        prepare_data(_folder_cfg(tmp_path, tiny, root))


def test_class_left_without_training_images_by_the_profile_is_an_error(tmp_path, tiny):
    root = _folder_tree(tmp_path / "tree", {"a": 6, "b": 6, "c": 6})
    with pytest.raises(
        ArgseError, match=r"data.imbalance_factor=10 leaves class 'c' \(1 class in all\) with 0 training"
    ):
        prepare_data(_folder_cfg(tmp_path, tiny, root, "data.imbalance_factor=10"))


def test_profile_is_capped_by_what_a_class_folder_holds(tmp_path, tiny):
    root = _folder_tree(tmp_path / "tree", {"a": 6, "b": 2, "c": 6})
    d = prepare_data(_folder_cfg(tmp_path, tiny, root))  # the profile asks 6, 4, 3
    assert d.class_counts.tolist() == [6, 2, 3] == torch.bincount(d.train.labels).tolist()


def _archive(path, members):
    """A .tar.gz of (name, bytes or None, type, linkname) members, in that order."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data, kind, link in members:
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.size = kind, link, len(data or b"")
            tar.addfile(info, io.BytesIO(data) if data else None)
    return path


def _tree_members(counts=(("a", 6), ("b", 3))):
    return [(f"{part}/{cls}/{i}.jpg", _jpeg(40 + 100 * k), tarfile.REGTYPE, "")
            for k, (cls, n) in enumerate(counts) for part, m in (("train", n), ("test", 4)) for i in range(m)]  # fmt: skip


def test_an_archive_with_links_reads_as_its_unpacked_folder(tmp_path, tiny):
    folder = _folder_tree(tmp_path / "tree", {"a": 6, "b": 4})  # the folder: copies of b/0.jpg and b/1.jpg
    links = [
        ("train/b/2.jpg", None, tarfile.LNKTYPE, "train/b/0.jpg"),
        ("train/b/3.jpg", None, tarfile.SYMTYPE, "1.jpg"),
    ]
    archive = _archive(tmp_path / "tree.tar.gz", _tree_members((("a", 6), ("b", 2))) + links)
    sets = ["data.imbalance_factor=1", "data.tail_max_count=4"]
    from_folder = prepare_data(_folder_cfg(tmp_path, tiny, folder, *sets))
    from_archive = prepare_data(_folder_cfg(tmp_path, tiny, archive, *sets))
    assert from_archive.class_counts.tolist() == from_folder.class_counts.tolist() == [6, 4]
    assert torch.equal(from_archive.train.images, from_folder.train.images)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            [("train/a/0.jpg", _jpeg(9), tarfile.REGTYPE, "")],
            r"train/a/0.jpg is stored twice \(members 'train/a/0.jpg'",
        ),
        ([("./train/a/1.jpg", _jpeg(9), tarfile.REGTYPE, "")], r"train/a/1.jpg is stored twice"),
        (
            [("../train/a/7.jpg", _jpeg(9), tarfile.REGTYPE, "")],
            r"member '../train/a/7.jpg' lies outside the image tree",
        ),
        ([("/train/a/8.jpg", _jpeg(9), tarfile.REGTYPE, "")], r"member '/train/a/8.jpg' lies outside the image tree"),
        (
            [("train/a/9.jpg", None, tarfile.SYMTYPE, "../../../etc/passwd")],
            r"link 'train/a/9.jpg' points to .*, outside",
        ),
        (
            [("train/a/9.jpg", None, tarfile.SYMTYPE, "/etc/passwd")],
            r"link 'train/a/9.jpg' points to '/etc/passwd', outs",
        ),
        ([("train/a/9.jpg", None, tarfile.LNKTYPE, "train/a/nothing.jpg")], r"which is not a file in the archive"),
    ],
)
def test_archive_members_an_unpacked_folder_would_not_hold_are_refused(tmp_path, tiny, extra, message):
    archive = _archive(tmp_path / "tree.tar.gz", _tree_members() + extra)
    with pytest.raises(ArgseError, match=f"tree.tar.gz: .*{message}.*; repack the archive"):
        prepare_data(_folder_cfg(tmp_path, tiny, archive, "data.tail_max_count=3"))


def test_an_image_too_large_for_the_limit_is_named_before_it_is_decoded(tmp_path, tiny, monkeypatch):
    from PIL import Image

    from argse.data import decode

    root = _folder_tree(tmp_path / "tree", {"a": 6, "b": 3})
    Image.new("RGB", (8, 64)).save(root / "train" / "a" / "big.png")
    monkeypatch.setattr(decode, "MAX_IMAGE_PIXELS", 500)  # 8x64 = 512 pixels
    decoded, real = [], decode.to_rgb
    monkeypatch.setattr(decode, "to_rgb", lambda im, what: decoded.append(what) or real(im, what))
    with pytest.raises(
        ArgseError, match=r"tree: train/a/big.png is 8x64 pixels \(512\), more than the 500 .*; replace"
    ):
        prepare_data(_folder_cfg(tmp_path, tiny, root, "data.tail_max_count=3"))
    assert not any("big.png" in what for what in decoded)  # refused from the header alone
    monkeypatch.setattr(decode, "MAX_IMAGE_PIXELS", 10**9)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow's own limit (it refuses above twice this)
    with pytest.raises(
        ArgseError,
        match=r"big.png declares more than 200 pixels \(Pillow's limit, .*decompression bomb; shrink it; replace or remove it",
    ):
        prepare_data(_folder_cfg(tmp_path, tiny, root, "data.tail_max_count=3"))


def test_high_bit_depth_images_are_scaled_not_clipped(tmp_path, tiny):
    import numpy as np
    from PIL import Image

    root = tmp_path / "tree"
    for part in ("train", "test"):
        for k, cls in enumerate("ab"):
            (root / part / cls).mkdir(parents=True)
            for i in range(
                6 if (part, cls) == ("train", "a") else 3
            ):  # a: 16-bit PNG at 1/4 of the range; b: float TIFF at 3/4
                if k == 0:
                    Image.fromarray(np.full((8, 8), 16384, np.uint16)).save(root / part / cls / f"{i}.png")
                else:
                    Image.fromarray(np.full((8, 8), 0.75, np.float32)).save(root / part / cls / f"{i}.tif")
    d = prepare_data(_folder_cfg(tmp_path, tiny, root, "data.imbalance_factor=1", "data.tail_max_count=3"))
    assert d.train.images[d.train.labels == 0].unique().tolist() == [64]  # 16384 * 255 / 65535
    assert d.train.images[d.train.labels == 1].unique().tolist() == [191]  # 0.75 * 255
    Image.fromarray(np.full((8, 8), 3.0, np.float32)).save(root / "train" / "b" / "0.tif")
    with pytest.raises(ArgseError, match=r"train/b/0.tif holds floating-point values from 3 to 3; argse reads float"):
        prepare_data(_folder_cfg(tmp_path, tiny, root, "data.imbalance_factor=1", "data.tail_max_count=3"))
