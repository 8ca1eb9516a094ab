"""argse: long-tailed experts, a gating network and selective prediction (learning to reject)."""

import os

# numpy's BLAS (OpenBLAS; torch has its own) serves argse's small products, the rule search's [G, K] x [K, N] and
# [G, N] x [N, K], where its threads wait on each other and on the other sweep processes (sweep.source_pool):
# on one thread the ImageNet-LT-size sweep of one source ran 1.3x faster (docs/performance_notes.md). It must be set
# before numpy is loaded; a value the user set is kept.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"
