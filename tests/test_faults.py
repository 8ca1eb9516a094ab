"""Issue 14's bad inputs and faults, end to end (benchmarks/faults.py): each one sentence, or fixed."""

import pytest

from benchmarks import faults


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return faults.Workspace(tmp_path_factory.mktemp("faults"))


@pytest.mark.parametrize("case", faults.CASES, ids=lambda c: f"{c.item}-{c.name}")
def test_fault(workspace, case):
    skip = faults.skip_reason(case)
    if skip:
        pytest.skip(skip)
    result = case.act(workspace)
    assert faults.check(case, result) is None, faults.check(case, result)
