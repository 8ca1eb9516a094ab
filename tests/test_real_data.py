"""Real-data smoke on the CIFAR-10 JPEG archive; skipped where ../shared is absent (a user's checkout)."""

import pytest
import torch

from argse import train_experts
from argse.config.loading import load_run_config
from argse.data.logits import read_logits, split_file
from argse.data.long_tail import prepare_data
from argse.stages.run import RunStages
from tests.conftest import SHARED_CIFAR10

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not SHARED_CIFAR10.is_file(), reason=f"{SHARED_CIFAR10} not found (no ../shared here)"),
]


def test_cifar10_archive_trains_and_exports(tmp_path):
    sets = [
        f"output_dir={tmp_path}/o",
        f"checkpoint_dir={tmp_path}/c",
        "name=real",
        "runtime.progress=false",
        "data.dataset=imagefolder_lt",
        f"data.root={SHARED_CIFAR10}",
        f"data.imagefolder_lt.cache_dir={tmp_path}/cache",
        "data.tail_max_count=200",
        "model.depth=8",
        "model.width=8",
        "recipes.ce.epochs=1",
        "recipes.ce.warmup_epochs=0",
        "recipes.ce.milestones=[]",
    ]
    cfg = load_run_config(None, sets)
    d = prepare_data(cfg)
    assert len(d.train.labels) == 12406 and d.class_counts.tolist()[-1] == 50
    assert d.classes[0] == "airplane" and d.groups.size("tail") == 3
    argv = ["--experts", "ce"] + [x for s in sets for x in ("--set", s)]
    assert train_experts.main(argv) == 0
    f = read_logits(split_file(RunStages(cfg).expert("ce").folder, "test"))
    assert f.logits.shape == (5000, 10)
    assert float((f.logits.argmax(1) == f.labels).double().mean()) > 0.15  # better than chance after one epoch
    assert torch.equal(torch.bincount(f.labels), torch.full((10,), 500))
