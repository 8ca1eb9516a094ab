"""argse benchmarks: ``python -m benchmarks`` (or ``make bench``) writes docs/performance.md."""
