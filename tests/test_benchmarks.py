def test_benchmark_smoke(tmp_path, monkeypatch):
    """The benchmark code runs (tiny sizes); the real figures come from `make bench`."""
    import benchmarks.__main__ as bench

    monkeypatch.setattr(bench, "ARCHIVE", tmp_path / "absent.tar.gz")
    out = tmp_path / "perf.md"
    assert bench.main(["--quick", "--only", "train,stage2,export", "--out", str(out)]) == 0
    text = out.read_text()
    assert "Training throughput" in text and "Decoupling stage 2" in text and "Logits export" in text
