"""A run's stages: list them, prune those the config no longer names, or import an older run's files.

``python -m argse.stages --config RUN.yaml`` lists every stage of the run: its folder, what it was made from,
whether this config (with any ``--set``) still names it, and the disk it holds (a trained expert's training
folder included). ``prune [--dry-run]`` removes every stage the config does not name, stages replaced by
``--rebuild``, work folders no build holds and training folders of no stage the config names.
``import FOLDER [--checkpoints DIR]`` publishes the split manifest, the config's experts and the gate of a run
folder written by an older argse (or any program writing argse.logits/1 in that layout) as this config's stages.
"""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from argse import cli
from argse.stages.manage import import_run, prune, rows
from argse.stages.run import RunStages


def size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    actions = parser.add_subparsers(dest="action")
    pr = actions.add_parser("prune", help="remove the stages this config does not name")
    pr.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    im = actions.add_parser("import", help="publish an older run folder's files as this config's stages")
    im.add_argument("folder", help="the run folder (splits.json, logits/<expert>/, gating/)")
    im.add_argument("--checkpoints", default=None, help="its checkpoint folder (<expert>/best.safetensors)")
    args = parser.parse_args(argv)
    cfg = cli.load_config(args)
    stages, console = RunStages(cfg), cli.console()
    if args.action == "prune":
        gone = prune(stages, args.dry_run)
        verb = "would remove" if args.dry_run else "removed"
        for path, n in gone:
            console.print(f"{verb} {path} ({size(n)})", soft_wrap=True)
        console.print(f"{verb} {len(gone)} folder(s), {size(sum(n for _, n in gone))}")
        return 0
    if args.action == "import":
        checkpoints = Path(args.checkpoints) if args.checkpoints else None
        for stage in import_run(stages, Path(args.folder), checkpoints):
            console.print(f"imported: {stage.folder}", soft_wrap=True)
        return 0
    table = Table(title=f"{cfg.name}: stages under {stages.store.root}")
    for column in ("stage", "made from", "this config", "disk", "built (UTC)"):
        table.add_column(column)
    listed = rows(stages)
    for r in listed:
        table.add_row(r.stage.folder.name, r.made_from, "current" if r.current else "not named",
                      size(r.bytes), r.stage.record.built)  # fmt: skip
    console.print(table)
    stale = sum(not r.current for r in listed)
    if stale:
        console.print(f"{stale} stage(s) this config does not name; python -m argse.stages prune removes them")
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
