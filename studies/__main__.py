"""``python -m studies``: every study with the first line of its docstring (read, not imported)."""

from __future__ import annotations

import ast
import pkgutil
from pathlib import Path

HERE = Path(__file__).resolve().parent
HELPERS = {"logit_factory"}  # imported by studies and tests, not run on its own


def studies() -> dict[str, str]:
    """Module name -> first docstring line, without importing (a study may pull in torch and a run)."""
    found = {}
    for module in pkgutil.iter_modules([str(HERE)]):
        if module.name.startswith("_") or module.name in HELPERS:
            continue
        doc = ast.get_docstring(ast.parse((HERE / f"{module.name}.py").read_text())) or ""
        found[module.name] = doc.strip().splitlines()[0] if doc.strip() else ""
    return found


def main() -> int:
    for name, line in studies().items():
        print(f"python -m studies.{name:22s} {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
