"""List the registered experts: ``python -m argse.experts [list] [--config RUN.yaml]``."""

from __future__ import annotations

from rich.table import Table

from argse import cli
from argse.experts import get_expert, list_experts


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("List the registered experts (built-in, config plugins and entry points).")
    parser.add_argument("command", nargs="?", default="list", choices=["list"])
    args = parser.parse_args(argv)
    cli.load_config(args)  # loads the config's plugins, so they are listed too
    table = Table(title="Registered experts")
    table.add_column("name")
    table.add_column("class")
    table.add_column("summary")
    for name in list_experts():
        cls = get_expert(name)
        table.add_row(name, f"{cls.__module__}.{cls.__qualname__}", (cls.__doc__ or "").strip().splitlines()[0])
    cli.console().print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
