"""list_lt: list-file datasets (ImageNet-LT / iNaturalist 2018 layout) on a few JPEGs written here."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from argse.config.loading import load_run_config
from argse.core.errors import ArgseError
from argse.data import decode
from argse.data.list_files import IMAGENET_MEAN, ImageList
from argse.data.logits import read_logits
from argse.data.long_tail import prepare_data
from argse.data.preprocess import eval_image, preprocess_record
from argse.experts import ExpertContext, Exported, get_expert, load_recipe
from argse.stages.experts import write_export

TRAIN_COUNTS = [6, 3, 2]
TEST_PER_CLASS = 5


def write_dataset(root: Path) -> None:
    g = torch.Generator().manual_seed(0)
    lines = {"train": [], "test": []}
    for part, counts in (("train", TRAIN_COUNTS), ("test", [TEST_PER_CLASS] * 3)):
        for label, n in enumerate(counts):
            folder = root / part / f"n{label:03d}"
            folder.mkdir(parents=True)
            for i in range(n):
                # Sizes differ, as in ImageNet: the transforms bring every image to one size.
                h, w = 40 + 4 * i, 48 - 2 * i
                image = (torch.rand(3, h, w, generator=g) * 60 + 60 * label).to(torch.uint8)
                Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"{i}.jpg", quality=90)
                lines[part].append(f"{part}/n{label:03d}/{i}.jpg {label}")
    (root / "LT_train.txt").write_text("\n".join(lines["train"]) + "\n")
    (root / "LT_test.txt").write_text("\n".join(lines["test"]) + "\n")


def overrides(tmp_path: Path, tiny: list[str], root: Path) -> list[str]:
    return tiny + [
        "data.dataset=list_lt",
        f"data.root={root}",
        "data.list_lt.train_list=LT_train.txt",
        "data.list_lt.test_lists=[LT_test.txt]",
        "data.list_lt.image_size=32",
        "data.list_lt.resize=36",
        "data.tail_max_count=2",
        "data.many_min_count=5",
        "data.few_max_count=3",
        "runtime.workers=2",
    ]


@pytest.fixture
def list_root(tmp_path):
    root = tmp_path / "images"
    write_dataset(root)
    return root


def test_counts_labels_and_splits_come_from_the_lists(tmp_path, tiny, list_root):
    data = prepare_data(load_run_config(None, overrides(tmp_path, tiny, list_root)))
    assert data.class_counts.tolist() == TRAIN_COUNTS  # the list is long-tailed already: used as it is
    assert isinstance(data.train.images, ImageList) and len(data.train.images) == sum(TRAIN_COUNTS)
    assert data.train.labels.tolist() == [c for c, n in enumerate(TRAIN_COUNTS) for _ in range(n)]
    held = data.held_out
    assert sum(len(s.labels) for s in held.values()) == 3 * TEST_PER_CLASS
    assert set(torch.cat([s.indices for s in held.values()]).tolist()) == set(range(3 * TEST_PER_CLASS))
    image, label = held["test"].images[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.uint8  # resize 36, centre crop 32
    assert label == int(held["test"].labels[0])
    assert "LT_train.txt" in data.manifest["source"]  # list contents are part of the split digest


def test_evaluation_images_are_prepared_as_the_dataset_declares(tmp_path, tiny, list_root):
    data = prepare_data(load_run_config(None, overrides(tmp_path, tiny, list_root)))
    record = preprocess_record(data)
    assert (record["image_size"], record["resize"], record["crop"]) == (None, 36, 32)
    assert record["mean"] == list(IMAGENET_MEAN)  # the images are never all decoded at once
    prep = SimpleNamespace(**{k: record[k] for k in ("image_size", "resize", "crop")})
    test = data.held_out["test"].images
    with Image.open(test.root / test.paths[0]) as im:
        assert torch.equal(eval_image(prep, im.convert("RGB")), test[0][0])  # any size: resized and cropped


@pytest.mark.parametrize(
    "line,message",
    [
        ("train/n000/0.jpg", r"LT_train.txt line 3: expected 'relative/path/to/image.jpg <class index>'"),
        ("train/n000/0.jpg zero", r"LT_train.txt line 3: expected"),
        ("train/n000/missing.jpg 0", r"LT_train.txt line 3: image .*missing.jpg does not exist"),
    ],
)
def test_bad_list_line_names_file_and_line(tmp_path, tiny, list_root, line, message):
    path = list_root / "LT_train.txt"
    lines = path.read_text().splitlines()
    lines.insert(2, line)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ArgseError, match=message):
        prepare_data(load_run_config(None, overrides(tmp_path, tiny, list_root)))


def test_missing_list_and_missing_root_are_clear(tmp_path, tiny, list_root):
    sets = overrides(tmp_path, tiny, list_root)
    with pytest.raises(ArgseError, match=r"list file .*nope.txt does not exist"):
        prepare_data(load_run_config(None, sets + ["data.list_lt.train_list=nope.txt"]))
    with pytest.raises(ArgseError, match=r"list_lt image root .* is not a directory"):
        prepare_data(load_run_config(None, sets + [f"data.root={tmp_path / 'absent'}"]))
    with pytest.raises(
        ArgseError,
        match=r"^invalid config in 'data\.list_lt': list_lt needs train_list and test_lists \(list files under data\.root\)$",
    ):
        prepare_data(load_run_config(None, sets + ["data.list_lt.test_lists=[]"]))


def test_corrupt_jpeg_fails_with_one_sentence_from_a_worker(tmp_path, tiny, list_root):
    cfg = load_run_config(None, overrides(tmp_path, tiny, list_root))
    data = prepare_data(cfg)
    (list_root / "train" / "n002" / "1.jpg").write_bytes(b"not a jpeg")
    cls = get_expert("ce")
    ctx = ExpertContext(cfg, data, torch.device("cpu"), folders={"ce": tmp_path / "training"})
    expert = cls(ctx, load_recipe(cls, cfg))
    with pytest.raises(ArgseError, match=r"^image .*n002/1.jpg cannot be decoded .*; replace or remove it$"):
        expert.train()


@pytest.mark.parametrize("arch", ["resnet50", "resnext50_32x4d"])
def test_torchvision_backbone_trains_and_exports_on_list_lt(tmp_path, tiny, list_root, arch):
    sets = overrides(tmp_path, tiny, list_root) + [
        f"model.arch={arch}",
        "recipes.ce.batch_size=4",
        "recipes.ce.lr=0.01",
        "recipes.ce.epochs=1",
    ]
    cfg = load_run_config(None, sets)
    data = prepare_data(cfg)
    ctx = ExpertContext(cfg, data, torch.device("cpu"), folders={"ce": tmp_path / "training"})
    cls = get_expert("ce")
    expert = cls(ctx, load_recipe(cls, cfg))
    expert.train()
    assert expert.model.fc.in_features == 2048 and expert.model.fc.out_features == 3
    temperature = expert.calibrate()
    work = tmp_path / "export"
    work.mkdir()
    write_export(work, ctx, expert, expert.held_out_logits(), temperature, tmp_path / "training")
    test = read_logits(work / "test.safetensors")
    assert test.logits.shape == (len(data.held_out["test"].labels), 3)
    assert torch.equal(test.indices, data.held_out["test"].indices)


def test_decoupling_caches_augmented_views_from_the_workers(tmp_path, tiny, list_root):
    stage2 = ["augment=true", "epochs=1", "batch_size=4", "lr=0.01"]
    sets = overrides(tmp_path, tiny, list_root) + [
        "model.arch=resnet50",
        "recipes.ce.batch_size=4",
        "recipes.ce.lr=0.01",
        "recipes.ce.epochs=1",
        "recipes.decoupling.stage1_from=ce",
        "recipes.decoupling.cache_views=2",
    ]
    cfg = load_run_config(None, sets + [f"recipes.decoupling.stage2.{s}" for s in stage2])
    folders = {name: tmp_path / "training" / name for name in ("ce", "decoupling")}
    ctx = ExpertContext(cfg, prepare_data(cfg), torch.device("cpu"), folders=folders)
    for name in ("ce", "decoupling"):
        cls = get_expert(name)
        expert = cls(ctx, load_recipe(cls, cfg))
        expert.train()
        ctx.exported[name] = Exported(name, folders[name], folders[name] / "best.safetensors")
    views = expert.features(ctx.data.train.images, 2)
    n = sum(TRAIN_COUNTS)
    assert views.shape == (2 * n, 2048)
    assert not torch.allclose(views[:n], views[n:])  # two different random crops of every image
    plain = expert.features(ctx.data.train.images)
    assert torch.equal(plain, expert.features(ctx.data.train.images))  # the evaluation transform is fixed


@pytest.mark.parametrize(
    "line", ["../outside.jpg 0", "{outside} 0", "train/../../outside.jpg 0", "../../../etc/passwd 0"]
)
def test_list_paths_outside_the_root_are_refused(tmp_path, tiny, list_root, line):
    outside = list_root.parent / "outside.jpg"
    outside.write_bytes((list_root / "train" / "n000" / "0.jpg").read_bytes())  # a real image: not a missing file
    path = list_root / "LT_train.txt"
    lines = path.read_text().splitlines()
    lines.insert(2, line.format(outside=outside))
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ArgseError, match=r"LT_train.txt line 3: image path .* leaves data.root .*; list paths must"):
        prepare_data(load_run_config(None, overrides(tmp_path, tiny, list_root)))


def test_symlinked_image_inside_the_root_is_still_read(tmp_path, tiny, list_root):
    # Datasets are often a folder of symlinks to another disk: only the path as written must stay inside.
    target = tmp_path / "elsewhere"
    (list_root / "train" / "n002").rename(target)
    (list_root / "train" / "n002").symlink_to(target)
    data = prepare_data(load_run_config(None, overrides(tmp_path, tiny, list_root)))
    assert data.class_counts.tolist() == TRAIN_COUNTS


def test_list_paths_with_spaces_and_oversized_images(tmp_path, tiny, list_root, monkeypatch):
    from argse.data.list_files import read_list, split_list_line

    assert split_list_line("train/a b/c d.jpg 3") == ("train/a b/c d.jpg", 3)
    assert split_list_line("photo 2.jpg") == ("photo 2.jpg", None)
    (list_root / "train" / "n000" / "0.jpg").rename(list_root / "train" / "n000" / "first image.jpg")
    train = list_root / "LT_train.txt"
    train.write_text(train.read_text().replace("n000/0.jpg 0", "n000/first image.jpg 0"))
    paths, labels = read_list(train, list_root)
    assert paths[0] == "train/n000/first image.jpg" and labels[0] == 0
    data = prepare_data(load_run_config(None, overrides(tmp_path, tiny, list_root)))
    assert data.class_counts.tolist() == TRAIN_COUNTS
    monkeypatch.setattr(decode, "MAX_IMAGE_PIXELS", 100)  # every image here is about 48x40
    with pytest.raises(ArgseError, match=r"^image .*first image.jpg is 48x40 pixels \(1,920\), more than the 100 .*"
                                         r"; replace or remove it$"):  # fmt: skip
        ImageList(list_root, ["train/n000/first image.jpg"], torch.tensor([0]), (None, None))[0]
    train.write_bytes("train/n000/caf\xe9.jpg 0\n".encode("latin-1"))
    with pytest.raises(ArgseError, match=r"list file .*LT_train.txt is not UTF-8 text \(byte 0xe9"):
        read_list(train, list_root)
