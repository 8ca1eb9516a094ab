"""argse studies: one-off experiments whose tables are quoted in docs/ (``python -m studies.<name>``).

Unlike ``benchmarks`` they measure accuracy or AURC, not speed; ``python -m studies`` lists them.
"""
