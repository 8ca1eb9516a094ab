"""Classify new images with a trained team, with the option to abstain.

``python -m argse.predict --config RUN.yaml INPUT [--rate 0.2 | --risk 0.1 [--delta 0.05] [--risk-of worst]]
[--source gating] [--method plugin_worst] [--top-k 5] [--classes names.txt] [--out FILE] [--format csv|jsonl]
[--digits 4]``

``--risk`` abstains with a guarantee instead of at a rate: the rule of largest coverage whose risk (``--risk-of``
balanced, worst, or groups with one risk per group: ``--risk 0.05,0.2``) is at most the target with probability
at least 1 - ``--delta`` over the fitting sample, picked from the candidate rules the evaluation kept
(argse.selective.guarantee); when none can promise it, one sentence says so with the smallest risk it could.

INPUT is an image file, a folder (searched recursively for every suffix Pillow opens) or a list file
(UTF-8 text: one image path per line, relative to the list's folder, optionally followed by an integer
label; the path may contain spaces). When every line has a label, the predictions are scored: accuracy,
coverage and selective error at the rule's rate. The output goes to ``outputs/NAME/predictions/<INPUT
name>.csv`` unless ``--out`` names a file; ``--out`` creates or replaces a regular file only, never an
input. Every expert's kept weights (``model.safetensors`` of its stage) and temperature, the gate and the rule that ``argse.evaluate``
fitted (``outputs/NAME/evaluation/rules.json``) are loaded; no training data is read. One row per image:
path, predicted class, its probability, accepted or rejected, the rule's score and threshold, the
``--top-k`` most probable classes, the label and whether the prediction is right (labelled lists), and
the gate weights. An image that cannot be decoded is named on stderr and skipped; the rest are
predicted. Without ``--source`` the source is gating when a gate was evaluated, else the first
evaluated source, and a line names it. Predict reads only published stages, which never change, so it
takes no lock and runs beside any other command. In Python: ``argse.inference.load(...)`` (docs/predict.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

from argse import cli
from argse.core import storage
from argse.core.errors import ArgseError
from argse.inference.inputs import check_labels, default_out, labelled_scores, read_inputs, write_rows
from argse.inference.team import guarantee_of, open_predictor, predict_files
from argse.reports.rules_file import read_rules
from argse.stages.run import RunStages


def parse(argv: list[str] | None):
    parser = cli.parser(__doc__)
    parser.add_argument("input", help="an image file, a folder of images, or a list file of image paths")
    parser.add_argument("--rate", type=float, default=None, help="target rejection rate (one of evaluate's grid; 0.2)")
    parser.add_argument("--risk", default=None, help="abstain so that the risk is at most this (comma list for groups)")
    parser.add_argument("--delta", type=float, default=0.05, help="with --risk: the chance the promise may fail")
    parser.add_argument("--risk-of", choices=("balanced", "worst", "groups"), default="worst",
                        help="with --risk: which risk (groups: one risk per group)")  # fmt: skip
    parser.add_argument("--source", default=None, help="gating or an expert (default: gating when fitted)")
    parser.add_argument("--method", default="plugin_worst", help="the fitted rejector: chow, plugin_balanced, ...")
    parser.add_argument("--top-k", type=int, default=1, help="also list the K most probable classes per image")
    parser.add_argument("--classes", default=None, help="class names, one per line in class-index order")
    parser.add_argument("--out", default=None, help="output file (default: outputs/NAME/predictions/INPUT.csv)")
    parser.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    parser.add_argument("--digits", type=int, default=4, help="significant digits written (0: full precision)")
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args(argv)
    for name, low, what in [("batch_size", 1, "images per batch"), ("top_k", 1, "classes per image"),
                            ("digits", 0, "0 writes full precision")]:  # fmt: skip
        if getattr(args, name) < low:
            flag = "--" + name.replace("_", "-")
            raise ArgseError(f"{flag} must be at least {low} ({what}), got {getattr(args, name)}")
    if args.risk is not None and args.rate is not None:
        raise ArgseError("--rate and --risk both choose the rule; give one (--risk abstains with a guarantee)")
    args.guarantee = None
    if args.risk is not None:
        try:
            risk = [float(x) for x in args.risk.split(",")]
        except ValueError:
            raise ArgseError(f"--risk takes a number or a comma list of numbers, got '{args.risk}'") from None
        args.guarantee = guarantee_of(risk, args.delta, args.risk_of)
    args.rate = 0.2 if args.rate is None else args.rate
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    cfg = cli.load_config(args)
    if args.config is None and not cfg.out_dir.is_dir():
        runs = sorted(p.parent.name for p in Path(cfg.output_dir).glob("*/config.yaml"))
        where = (
            f"runs in {cfg.output_dir}: {', '.join(runs)}" if runs else f"no run in {cfg.output_dir} yet (make demo)"
        )
        raise ArgseError(f"no --config given and the built-in settings' run {cfg.out_dir} does not exist; {where}; "
                         f"give one with --config outputs/NAME")  # fmt: skip
    source = args.source
    if source is None:  # the default follows rules.json, so it is named: it must never change unseen
        source = read_rules(RunStages(cfg).evaluation().folder).default_source()
        why = "the default when a gate was evaluated" if source == "gating" else "the first evaluated source"
        cli.console().print(f"source: {source} ({why}; --source to choose)")
    target = Path(args.input)
    inputs = read_inputs(target)
    if args.out is None:
        storage.make_dir(cfg.out_dir / "predictions")
    out = Path(args.out) if args.out is not None else default_out(cfg, target, args.format)
    storage.check_destination(out, [target, *inputs.paths], example="predictions.csv")  # before the work
    predictor = open_predictor(cfg, source, args.method, args.rate, args.classes and Path(args.classes),
                               guarantee=args.guarantee)  # fmt: skip
    if args.guarantee is not None:
        cli.console().print(f"rule: {args.method} with {args.guarantee.describe()} over the fitting sample "
                            f"(it rejected {predictor.rule.rate:g} of the half that fixed it)", soft_wrap=True)  # fmt: skip
    cli.console().print(f"read: {', '.join(str(f) for f in predictor.read)}", soft_wrap=True)
    check_labels(inputs, target, predictor.classes)
    if inputs.note:
        print(f"warning: {inputs.note}", file=sys.stderr)
    rows, skipped = predict_files(predictor, inputs, args.batch_size, args.top_k)
    for message in skipped:
        print(f"warning: {message}", file=sys.stderr)
    if not rows:  # an empty file with exit 0 would read as a success
        raise ArgseError(f"no image of {target} could be predicted (the {len(skipped)} named above were skipped); "
                         f"nothing was written")  # fmt: skip
    team = predictor.team
    write_rows(rows, out, args.format, team.names if team.gate is not None else None, [target, *inputs.paths],
               args.top_k, args.digits)  # fmt: skip
    accepted = sum(r["decision"] == "accepted" for r in rows)
    how = f"rejection rate {args.rate:g}" if args.guarantee is None else args.guarantee.describe()
    cli.console().print(f"{len(rows)} images predicted by {predictor.rule.source} / {args.method} at "
                        f"{how} ({accepted} accepted, {len(rows) - accepted} rejected, {len(skipped)} skipped; "
                        f"the run takes {predictor.input_size}); written: {out}", soft_wrap=True)  # fmt: skip
    scores = labelled_scores(rows)
    if scores is not None:
        err = scores["selective_error"]
        cli.console().print(f"labelled: accuracy {scores['accuracy']:.4f} over all {scores['n']}, coverage "
                            f"{scores['coverage']:.4f}, selective error {'-' if err is None else f'{err:.4f}'} "
                            f"(errors among the accepted), unweighted, on these images", soft_wrap=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
