from tests.conftest import tiny_overrides


def test_benchmark_smoke(tmp_path, monkeypatch):
    """The benchmark code runs (tiny sizes); the real figures come from `make bench`."""
    import benchmarks.__main__ as bench

    monkeypatch.setattr(bench, "ARCHIVE", tmp_path / "absent.tar.gz")
    out = tmp_path / "perf.md"
    assert bench.main(["--quick", "--only", "train,stage2,export,gating,selective", "--out", str(out)]) == 0
    text = out.read_text()
    assert "Training throughput" in text and "Decoupling stage 2" in text and "Logits export" in text
    assert "Gating: 100 epochs" in text and "Selective sweep: 100 classes, 1 sources x 3 methods" in text


def test_scaling_benchmark_smoke(tmp_path):
    """1 vs 2 torchrun processes on a tiny synthetic run; the real figures come from `make bench`."""
    from benchmarks import scaling

    out = tmp_path / "scaling.md"
    assert scaling.main(["--quick", "--out", str(out)]) == 0
    rows = [line for line in out.read_text().splitlines() if line.startswith("| 1 ") or line.startswith("| 2 ")]
    assert len(rows) == 3 and "| 1.00x |" in rows[0] and "sync_bn off" in rows[2]


def test_gpu_section_says_it_was_skipped_without_cuda(tmp_path, monkeypatch):
    import torch

    import benchmarks.__main__ as bench

    monkeypatch.setattr(bench, "ARCHIVE", tmp_path / "absent.tar.gz")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "perf.md"
    assert bench.main(["--quick", "--only", "gpu", "--out", str(out)]) == 0
    assert "## GPU\n\nSkipped: no CUDA device in this run" in out.read_text()


def test_train_overhead_times_each_per_step_extra():
    from benchmarks.train_overhead import loop_extras

    extras = loop_extras()
    assert {"LambdaLR.step", "divergence tracking (where + add)", "progress.advance (disabled bar)"} <= set(extras)
    assert all(us > 0 for us in extras.values())


def test_team_wall_time_rows_train_the_whole_team_three_ways(tmp_path):
    """The GPU section's team rows, run on the CPU with the tiny run: every way exports every expert."""
    from benchmarks.gpu import TEAM, TEAM_MODES, team_rows

    rows = team_rows(tiny_overrides(tmp_path), tmp_path, epochs=1)
    assert [r[0].split(": ", 1)[1] for r in rows] == list(TEAM_MODES)
    assert all(float(r[1].removesuffix(" s")) > 0 for r in rows)
    for i in range(len(TEAM_MODES)):
        for name in TEAM:
            assert (tmp_path / str(i) / "tiny" / "logits" / name / "test.safetensors").is_file(), (i, name)


def test_gating_memory_benchmark_smoke(tmp_path, capsys):
    """Its hand-made run passes train_gating's checks and the measuring process prints its line, each time it is
    measured; the real figures are in docs/gating.md#train_gating-memory."""
    import json

    from benchmarks import gating_memory

    argv = ["--classes", "6", "--tune", "60", "--val", "30", "--test", "40", "--experts", "2", "--dir", str(tmp_path)]
    assert gating_memory.main(argv) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["classes"] == 6 and line["peak_rss_mib"] >= line["rss_after_imports_mib"] > 0 and line["seconds"] > 0
    run = tmp_path / "c6_t60_v30_s40_e2" / "bench"  # the gate's stage was published, with its mixture
    assert (run / "gating" / "gate.json").is_file() and (run / "logits" / "gating" / "test.safetensors").is_file()
    assert gating_memory.main(argv) == 0  # the run is reused and the gate built again, not found
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["seconds"] > 0 and len(list((run / "stages").glob("gate-*"))) == 1


def test_a_failed_torchrun_launch_shows_each_ranks_own_words():
    """Issue 39: the smoke test above once failed under load with only torchrun's summary of exit codes; a failure
    now carries what each rank itself printed."""
    import pytest

    from benchmarks import scaling

    with pytest.raises(RuntimeError) as failed:
        scaling.run(2, 1, ["model.depth=8", "data.synthetic_lt.image_size=16", "recipes.ce.no_such_key=1"], 1)
    message = str(failed.value)
    assert message.startswith("2 process(es) exited 1")
    rank0 = message.split("--- rank 0 stderr")[1].split("--- ")[0]
    assert "no_such_key" in rank0 and "--- the launcher's last lines:" in message
