"""Classify new images with a trained team, with the option to abstain.

``python -m argse.predict --config RUN.yaml INPUT [--rate 0.2] [--source gating] [--method plugin_worst]
[--out predictions.csv] [--format csv|jsonl]``

INPUT is an image file, a folder (searched recursively for every suffix Pillow opens) or a list file
(UTF-8 text: one image path per line, relative to the list's folder, optionally followed by an integer
label, which is ignored; the path may contain spaces). ``--out`` creates or replaces a regular file only,
never an input. Every
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
from argse.errors import ArgseError
from argse.prediction import check_out, list_images, predict_images, write_rows
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
    if args.batch_size < 1:
        raise ArgseError(f"--batch-size must be at least 1 (images per batch), got {args.batch_size}")
    cfg = cli.load_config(args)
    cli.lock_run_shared(cfg, "predict")  # no writer replaces the rules, the gate or a checkpoint under us
    source = args.source
    if source is None:  # the default follows rules.json, so it is named: it must never change unseen
        source = read_rules(cfg.paths).default_source()
        why = "the default when a gate was evaluated" if source == "gating" else "the first evaluated source"
        cli.console().print(f"source: {source} ({why}; --source to choose)")
    target = Path(args.input)
    paths = list_images(target)
    out = Path(args.out or f"predictions.{args.format}")
    check_out(out, [target, *paths])  # before the work: a bad --out is known now
    rows, skipped, team = predict_images(cfg, paths, source, args.method, args.rate, args.batch_size)
    for message in skipped:
        print(f"warning: {message}", file=sys.stderr)
    if not rows:  # an empty file with exit 0 would read as a success
        raise ArgseError(f"no image of {target} could be predicted (the {len(skipped)} named above were skipped); "
                         f"nothing was written")  # fmt: skip
    write_rows(rows, out, args.format, team.names if team.gate is not None else None, [target, *paths])
    accepted = sum(r["decision"] == "accepted" for r in rows)
    cli.console().print(f"{len(rows)} images predicted ({accepted} accepted, {len(rows) - accepted} rejected, "
                        f"{len(skipped)} skipped); written: {out}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
