"""argse benchmarks: ``python -m benchmarks`` (or ``make bench``) writes docs/performance.md."""

import argse  # noqa: F401  first, so that numpy's BLAS is set up as argse's entry points have it (argse/__init__.py)
