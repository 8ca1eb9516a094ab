"""Hand-made logits for ``studies.gate_objectives``: three noisy experts, none perfect.

``python -m studies.synthetic_logits --out DIR`` writes DIR/outputs/lf/logits/{head,tail,mid}/ (the
held-out splits, 100 / 200 / 200 samples per class, through ``studies/logit_factory.py``) and DIR/lf.yaml.
Ten classes with the counts of ``tests/test_gating.py`` (classes 7, 8, 9 form the tail). Each expert is
right with its own probability on head and on tail samples; right answers are more confident on
average, with overlap, so confidence ranks correctness only partly and routing matters.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from studies import logit_factory

C, HEAD = 10, 7
COUNTS = [500, 300, 200, 120, 80, 60, 40, 10, 8, 5]
SPLIT_SIZES = {"val": 100, "tune": 200, "test": 200}  # per class: larger than the tests' so AURC differences show
CONFIG = "name: lf\ndata:\n  tail_max_count: 20\nruntime:\n  device: cpu\n  progress: false\n"


def expert(p_right_head: float, p_right_tail: float):
    def logits(labels: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        n = len(labels)
        tail = labels >= HEAD
        right = torch.rand(n, generator=g) < torch.where(tail, p_right_tail, p_right_head)
        wrong = (labels + 1 + torch.randint(0, C - 1, (n,), generator=g)) % C
        conf = torch.where(right, 0.35 + 0.6 * torch.rand(n, generator=g), 0.25 + 0.5 * torch.rand(n, generator=g))
        return logit_factory.peaked(labels, torch.where(right, labels, wrong), conf, C)

    return logits


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", required=True)
    out = Path(p.parse_args(argv).out)
    experts = {"head": expert(0.9, 0.3), "tail": expert(0.6, 0.8), "mid": expert(0.75, 0.55)}
    # Imported as the stages of run lf under DIR/lf.yaml's data settings (what the commands that read them are given).
    logit_factory.write_run(out / "outputs" / "lf", experts, C, COUNTS, split_sizes=SPLIT_SIZES,
                            overrides=["data.tail_max_count=20"])  # fmt: skip
    (out / "lf.yaml").write_text(CONFIG)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
