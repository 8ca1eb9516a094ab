"""The studies run (tiny sizes); the tables in docs/ come from running them on a real run."""

from studies.__main__ import studies
from tests.conftest import tiny_overrides


def test_every_study_is_listed_with_its_summary():
    listed = studies()
    assert set(listed) == {
        "decoupling_variants",
        "gate_objectives",
        "paper_lambda_sign",
        "plugin_family",
        "plugin_search",
        "synthetic_logits",
        "temperature_prior",
        "torch_uncertainty_metrics",
    }
    assert all(listed.values())


def test_synthetic_logits_writes_its_own_split_sizes(tmp_path):
    from argse.data.logits import load_sources, run_folders, run_manifest
    from studies import synthetic_logits

    assert synthetic_logits.main(["--out", str(tmp_path)]) == 0
    out = tmp_path / "outputs" / "lf"
    files = load_sources(run_folders(out, ["head", "tail", "mid"]), ["val", "tune", "test"], run_manifest(out))
    for split, per_class in synthetic_logits.SPLIT_SIZES.items():
        assert [len(f.labels) for f in files[split]] == [per_class * synthetic_logits.C] * 3, split
    assert (tmp_path / "lf.yaml").is_file()
    # They are the stages of the run lf.yaml names (the commands run on them find them).
    from argse.config.loading import load_run_config
    from argse.stages.run import RunStages

    cfg = load_run_config(str(tmp_path / "lf.yaml"), [f"output_dir={tmp_path / 'outputs'}", "experts=[head,tail,mid]"])
    stages = RunStages(cfg)
    assert {n: stages.expert(n).folder for n in cfg.experts} == {
        n: f.resolve() for n, f in run_folders(out, cfg.experts).items()
    }


def test_decoupling_variants_smoke(tmp_path):
    """Every stage-2 variant runs from one tiny ce and reports its best epoch; real figures: docs/results."""
    from argse import train_experts
    from studies import decoupling_variants

    sets = tiny_overrides(tmp_path)
    assert train_experts.main([x for s in sets for x in ("--set", s)] + ["--experts", "ce"]) == 0
    out = tmp_path / "variants.md"
    argv = [x for s in sets for x in ("--set", s)] + ["--config", str(tmp_path / "none.yaml"), "--views", "2"]
    (tmp_path / "none.yaml").write_text("{}\n")
    assert decoupling_variants.main([*argv, "--out", str(out)]) == 0
    text = out.read_text()
    for label in ("tau-norm", "cRT, 2-view cache", "LWS, Kang (augment, BN train, no cache)"):
        assert label in text
    assert text.count("| 2 |") + text.count("| 1 |") >= 6  # a best epoch for every trained variant


def test_temperature_prior_prints_both_temperatures_and_paired_differences(tmp_path, capsys):
    import torch

    from studies import temperature_prior
    from studies.logit_factory import write_run

    def model(labels, g):
        return 3 * torch.randn(len(labels), 4, generator=g) + 4 * torch.nn.functional.one_hot(labels, 4)

    write_run(tmp_path / "o" / "tp", {"ce": model}, 4, [100, 50, 10, 5], overrides=["data.tail_max_count=10"])
    sets = [f"output_dir={tmp_path / 'o'}", "name=tp", "data.tail_max_count=10", "experts=[ce]",
            "evaluate.bootstrap=50", "evaluate.methods=[chow]"]  # fmt: skip
    assert temperature_prior.main([x for s in sets for x in ("--set", s)]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| ce | chow |"))
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert float(cells[2]) > 0 and float(cells[3]) > 0 and "->" in cells[4] and "[" in cells[5]
