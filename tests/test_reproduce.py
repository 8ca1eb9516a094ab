import torch

from argse import cli, reproduce
from studies.logit_factory import write_run


def _model(strength):
    def fn(labels, g):
        return torch.randn(len(labels), 4, generator=g) + strength * torch.nn.functional.one_hot(labels, 4)

    return fn


SETS = ["data.tail_max_count=10"]  # the data settings the hand-made experts are imported under, as _argv gives them


def _argv(tmp_path, *extra, out=True):
    argv = ["--skip-training", *(["--out", str(tmp_path / "docs" / "r.md")] if out else []), *extra]
    for s in (
        f"output_dir={tmp_path / 'o'}",
        "name=r",
        *SETS,
        "experts=[ce, logit_adjust]",
        "gating.epochs=20",
    ):
        argv += ["--set", s]
    return argv


def test_results_page_from_exported_logits(tmp_path):
    write_run(
        tmp_path / "o" / "r", {"ce": _model(1.0), "logit_adjust": _model(3.0)}, 4, [100, 50, 10, 5], overrides=SETS
    )
    assert reproduce.main(_argv(tmp_path)) == 0
    page = (tmp_path / "docs" / "r.md").read_text()
    assert (tmp_path / "docs" / "r.png").stat().st_size > 1000
    assert "| logit_adjust |" in page and "| gating |" in page and "plugin_worst" in page
    assert "- PASS: `logit_adjust` vs ce: tail +" in page  # the stronger expert wins on the tail
    for view in ("(train, argse)", "(train, paper)", "(balanced, argse)", "(balanced, paper)"):
        assert f"balanced {view}" in page and f"worst_group {view}" in page
    assert "Narasimhan et al. 2024, Table 2" in page
    row = next(line for line in page.splitlines() if line.startswith("| ce | chow |"))
    assert "±" not in row  # one seed: no standard error
    more = page.split("## More figures of each curve")[1]
    row = next(line for line in more.splitlines() if line.startswith("| ce | plugin_worst |"))
    assert row.count("[") == 12  # one seed: every figure with its bootstrap interval


def test_results_page_over_seeds_reports_standard_errors(tmp_path):
    for seed in (0, 1):
        models = {"ce": _model(1.0), "logit_adjust": _model(3.0)}
        write_run(tmp_path / "o" / f"r_seed{seed}", models, 4, [100, 50, 10, 5], seed=seed,
                  overrides=[*SETS, f"seed={seed}"])  # fmt: skip
    assert reproduce.main(_argv(tmp_path, "--seeds", "0,1")) == 0
    page = (tmp_path / "docs" / "r.md").read_text()
    assert "Seeds: 0, 1 (2 run(s)" in page
    row = next(line for line in page.splitlines() if line.startswith("| logit_adjust | plugin_balanced |"))
    assert row.count("±") == 8  # mean ± standard error in every AURC column
    more = page.split("## More figures of each curve")[1]
    row = next(line for line in more.splitlines() if line.startswith("| logit_adjust | plugin_balanced |"))
    assert row.count("±") == 12 and "[" not in row  # several seeds: the spread over seeds
    assert (tmp_path / "o" / "r_seed1" / "evaluation" / "report.json").is_file()


def test_the_page_goes_under_outputs_unless_asked(tmp_path, monkeypatch):
    """Without --out the page lands in <output_dir>/results/, never in the source tree's docs/."""
    monkeypatch.chdir(tmp_path)
    write_run(
        tmp_path / "o" / "r", {"ce": _model(1.0), "logit_adjust": _model(3.0)}, 4, [100, 50, 10, 5], overrides=SETS
    )
    assert reproduce.main(_argv(tmp_path, out=False)) == 0
    assert (tmp_path / "o" / "results" / "r.md").is_file() and (tmp_path / "o" / "results" / "r.png").is_file()
    assert not (tmp_path / "docs").exists()


def test_out_must_name_a_markdown_page(tmp_path, capsys):
    assert cli.run(reproduce.main, ["--skip-training", "--out", str(tmp_path / "page.txt")]) == 2
    assert "--out" in capsys.readouterr().err and not (tmp_path / "page.txt").exists()
