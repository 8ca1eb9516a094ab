"""The tiny synthetic run shared by the test fixtures and the fault cases (tests/fault_harness.py):
4 classes of 8x8 images, a depth-8 ResNet of width 4, on the CPU, so an epoch takes well under a second."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

TINY_RUN = {
    "name": "tiny",
    "recipes_dir": str(REPO / "experts"),
    "data.dataset": "synthetic_lt",
    "data.synthetic_lt.classes": "4",
    "data.synthetic_lt.max_per_class": "40",
    "data.synthetic_lt.test_per_class": "20",
    "data.synthetic_lt.image_size": "8",
    "data.imbalance_factor": "10",
    "data.tail_max_count": "8",
    "data.many_min_count": "30",
    "data.few_max_count": "10",
    "model.depth": "8",
    "model.width": "4",
    "runtime.device": "cpu",
    "runtime.progress": "false",
    "runtime.bf16": "false",  # fp32 on every CPU: the equality tests compare exact arithmetic
    # One thread, whatever else the machine runs: the default (the free cores) would change the sums between two
    # builds a test compares; and a tiny network gains nothing from a second thread.
    "runtime.threads": "1",
}

# For the tests of results pages: a coarser rejection grid and no guarantee ladders give a page's tables and checks
# as with the defaults in about a quarter of the time (fitting the rejectors at every rate is most of an evaluation;
# tests/test_guarantee.py covers the ladders).
QUICK_EVALUATION = [
    "evaluate.rejection_grid=[0.0, 0.2, 0.4, 0.6, 0.8]",
    "evaluate.ladders=false",
    "evaluate.guarantees=[]",
]
