"""Commit a run's files that were written without commit records (by an older argse, or by another
program that writes argse.logits/1 files), so the readers accept them: ``python -m argse.adopt --config RUN.yaml``.

Each expert's logits, then the gate, then the mixture, then the evaluation are committed as they
are, each recorded as made from the layer before; run it only on files that belong together.
"""

from __future__ import annotations

from argse import cli
from argse.filesets import adopt
from argse.logits import SPLIT_FILES, available_sources
from argse.paths import RunPaths
from argse.storage import file_sha256


def checkpoint(run: RunPaths, expert: str) -> dict[str, str]:
    """The digest of the expert's best checkpoint, when the run has it (predict checks it)."""
    best = run.best(expert)
    return {"checkpoint": file_sha256(best)} if best.is_file() else {}


def main(argv: list[str] | None = None) -> int:
    args = cli.parser(__doc__).parse_args(argv)
    cfg = cli.load_config(args)
    cli.lock_run(cfg, "adopt")
    run = cfg.paths
    experts = [s for s in available_sources(cfg.out_dir) if s != "gating"]
    layers = [
        [(run.logits_dir(e), SPLIT_FILES, f"python -m argse.train_experts --experts {e} --resume", checkpoint(run, e))
         for e in experts],
        [(run.gating, [run.gate_json.name, *([run.gate_weights.name] if run.gate_weights.is_file() else [])],
          "python -m argse.train_gating", {})],
        [(run.logits_dir("gating"), SPLIT_FILES, "python -m argse.train_gating", {})],
        [(run.evaluation, [run.report.name, run.rules.name], "python -m argse.evaluate", {})],
    ]  # fmt: skip
    done = adopt(cfg.out_dir, layers)
    cli.console().print(f"committed {len(done)} set(s): " + (", ".join(str(p) for p in done) or "none needed"))
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
