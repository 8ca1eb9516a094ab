"""runtime.threads=0 takes the cores no other work is using, measured from /proc/stat when the command starts."""

from __future__ import annotations

import io

import pytest
import torch

from argse.config.loading import load_run_config
from argse.training import device as device_module


def fake_stat(samples: list[tuple[int, int]]):
    """An ``open`` whose /proc/stat reads (idle, busy) jiffies from ``samples`` in turn."""
    it = iter(samples)

    def open_(path, *args, **kwargs):
        idle, busy = next(it)
        return io.StringIO(f"cpu  {busy} 0 0 {idle} 0 0 0 0 0 0\n")

    return open_


@pytest.mark.parametrize(("idle", "busy", "free"), [(200, 0, 2.0), (100, 100, 1.0), (0, 200, 0.0)])
def test_free_cores_are_the_idle_share_of_the_cores(monkeypatch, idle, busy, free):
    monkeypatch.setattr(device_module, "open", fake_stat([(0, 0), (idle, busy)]), raising=False)
    monkeypatch.setattr(device_module.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(device_module, "usable_cores", lambda: 2)
    assert device_module.free_cores(window_s=0) == pytest.approx(free)


@pytest.mark.parametrize(("free", "threads"), [(0.0, 1), (0.6, 1), (1.6, 2), (2.0, 2)])
def test_the_default_thread_count_follows_the_free_cores(monkeypatch, free, threads):
    before = torch.get_num_threads()
    monkeypatch.setattr(device_module, "free_cores", lambda: free)
    monkeypatch.setattr(device_module, "usable_cores", lambda: 2)
    try:
        device_module.resolve_device(load_run_config(None, ["runtime.device=cpu"]).runtime)
        assert torch.get_num_threads() == threads
        device_module.resolve_device(load_run_config(None, ["runtime.device=cpu", "runtime.threads=1"]).runtime)
        assert torch.get_num_threads() == 1  # a setting is kept as it is
    finally:
        torch.set_num_threads(before)


def test_without_proc_stat_every_core_counts_as_free(monkeypatch):
    def missing(*a, **k):
        raise OSError("no /proc here")

    monkeypatch.setattr(device_module, "open", missing, raising=False)
    assert device_module.free_cores(window_s=0) == device_module.usable_cores()
