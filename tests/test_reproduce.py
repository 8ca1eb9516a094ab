import torch

from argse import reproduce
from tests.logit_factory import write_run


def _model(strength):
    def fn(labels, g):
        return torch.randn(len(labels), 4, generator=g) + strength * torch.nn.functional.one_hot(labels, 4)

    return fn


def test_results_page_from_exported_logits(tmp_path):
    write_run(tmp_path / "o" / "r", {"ce": _model(1.0), "logit_adjust": _model(3.0)}, 4, [100, 50, 10, 5])
    argv = ["--skip-training", "--docs", str(tmp_path / "docs")]
    for s in (
        f"output_dir={tmp_path / 'o'}",
        "name=r",
        "data.tail_max_count=10",
        "experts=[ce, logit_adjust]",
        "gating.epochs=20",
    ):
        argv += ["--set", s]
    assert reproduce.main(argv) == 0
    page = (tmp_path / "docs" / "r.md").read_text()
    assert (tmp_path / "docs" / "r.png").stat().st_size > 1000
    assert "| logit_adjust |" in page and "| gating |" in page and "plugin_worst" in page
    assert "- PASS: `logit_adjust` tail" in page  # the stronger expert wins on the tail
    assert "## Published CIFAR-10-LT" in page
