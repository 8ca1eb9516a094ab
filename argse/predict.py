"""Classify new images with a trained team, with the option to abstain.

``python -m argse.predict --config RUN.yaml INPUT [--rate 0.2] [--source gating] [--method plugin_worst]
[--out predictions.csv] [--format csv|jsonl]``

INPUT is an image file, a folder (searched recursively) or a list file (``.txt``: one image path per
line, relative to the list's folder, optionally followed by a label, which is ignored). Every
expert's ``best.safetensors`` and temperature, the gate and the rule that ``argse.evaluate`` fitted
(``outputs/NAME/evaluation/rules.json``) are loaded; no training data is read. One row per image:
path, predicted class, its probability, accepted or rejected, the rule's score and threshold, and
the gate weights. An image that cannot be decoded is named on stderr and skipped; the rest are
predicted. Without ``--source`` the source is gating when a gate was evaluated, else the first
evaluated source, and a line names it. Predict holds the run's lock as a reader: predicts run side by
side, but not while train_experts, train_gating or evaluate writes the run.
"""

from __future__ import annotations

import sys
from pathlib import Path

from argse import cli
from argse.prediction import list_images, predict_images, write_rows
from argse.rules import read_rules


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument("input", help="an image file, a folder of images, or a list file of image paths")
    parser.add_argument("--rate", type=float, default=0.2, help="target rejection rate (one of evaluate's grid)")
    parser.add_argument("--source", default=None, help="gating or an expert (default: gating when fitted)")
    parser.add_argument("--method", default="plugin_worst", help="the fitted rejector: chow, plugin_balanced, ...")
    parser.add_argument("--out", default=None, help="output file (default: predictions.csv or .jsonl)")
    parser.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args(argv)
    cfg = cli.load_config(args)
    cli.lock_run_shared(cfg, "predict")  # no writer replaces the rules, the gate or a checkpoint under us
    source = args.source
    if source is None:  # the default follows rules.json, so it is named: it must never change unseen
        source = read_rules(cfg.paths).default_source()
        why = "the default when a gate was evaluated" if source == "gating" else "the first evaluated source"
        cli.console().print(f"source: {source} ({why}; --source to choose)")
    paths = list_images(Path(args.input))
    rows, skipped, team = predict_images(cfg, paths, source, args.method, args.rate, args.batch_size)
    for message in skipped:
        print(f"warning: {message}", file=sys.stderr)
    out = Path(args.out or f"predictions.{args.format}")
    write_rows(rows, out, args.format, team.names if team.gate is not None else None)
    accepted = sum(r["decision"] == "accepted" for r in rows)
    cli.console().print(f"{len(rows)} images predicted ({accepted} accepted, {len(rows) - accepted} rejected, "
                        f"{len(skipped)} undecodable); written: {out}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
