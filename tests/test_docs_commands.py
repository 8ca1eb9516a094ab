"""Every command in README.md and docs/*.md works as written, as far as it can without data or a GPU.

The commands are extracted from the pages (``make ...``, ``python -m ...``, ``torchrun ... -m ...`` in
bash blocks and inline code). A ``make`` command must name a real target; its recipe (``make -n``)
gives the argse commands it runs. Each ``python -m argse.<entry point>`` runs in-process with
``--print-config`` appended: its flags parse, its config file exists and loads, every ``--set`` key is
valid, the experts it names exist and their recipes resolve, and nothing is trained or written. Other
modules (studies, benchmarks) must exist, with their ``--config`` and ``--set`` checked the same way.
Templates (``RUN.yaml``, ``[--flag]``, ``mypkg``, ``...``) and bare names in prose (```make predict```
naming the target in a sentence) are checked for their target or module only.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import shlex
import subprocess

import pytest

from argse import cli
from argse.config.loading import load_run_config
from tests.tiny_run import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
START = re.compile(r"^(make |python -m |torchrun )")
TEMPLATE = ("RUN.yaml", "[--", " | ", "mypkg", "...", "HOST:", "a,b", "DIR", "=S ")
# The entry points that take --config / --set (argse.cli.parser) and so --print-config.
ENTRY_POINTS = {"train_experts", "train_gating", "evaluate", "reproduce", "predict", "stages", "experts", "table2"}
PACKAGES = {"argse.experts", "argse.stages"}  # entry points whose main is in the package's __main__


def page_commands(text: str) -> list[tuple[str, bool]]:
    """The commands of one page, each with whether it stands in prose: lines of bash blocks (continuations
    joined) and inline code spans."""
    found = []
    # Each fence from its opening (``` and a language, or none) to the next ``` line, indented (in a list) or not.
    fences = re.findall(r"^[ \t]*```([\w+-]*)[ \t]*\n(.*?)^[ \t]*```[ \t]*$", text, re.S | re.M)
    for language, block in fences:
        if language not in ("", "bash", "sh"):
            continue
        lines = block.replace("\\\n", " ").splitlines()
        found += [(line.strip(), False) for line in lines if START.match(line.strip())]
    prose = re.sub(r"^[ \t]*```.*?^[ \t]*```[ \t]*$", "", text, flags=re.S | re.M)
    found += [(c, True) for c in re.findall(r"`([^`\n]+)`", prose) if START.match(c)]
    return found


COMMANDS = sorted({(page.relative_to(REPO).as_posix(), *c) for page in PAGES for c in page_commands(page.read_text())})


def test_the_pages_hold_commands_to_check():
    """The extraction finds the commands (an empty list would make every check below pass)."""
    assert len(COMMANDS) >= 60
    assert ("README.md", "make demo") in {(p, c.split("#")[0].strip()) for p, c, _ in COMMANDS}


def _module_argv(words: list[str]) -> tuple[str, list[str]]:
    """``python -m X args`` / ``torchrun ... -m X args`` -> (X, args)."""
    i = words.index("-m")
    return words[i + 1], words[i + 2 :]


def _check_module(module: str, argv: list[str], capsys) -> None:
    assert importlib.util.find_spec(module) is not None, f"no module {module}"
    if module.startswith("argse.") and module.split(".", 1)[1] in ENTRY_POINTS:
        main = importlib.import_module(f"{module}.__main__" if module in PACKAGES else module).main
        # First: the options of the command itself come before a subcommand (python -m argse.stages prune).
        code = cli.run(main, ["--print-config", *argv])
        err = capsys.readouterr().err
        assert code == 0, f"{module} {' '.join(argv)}: {err.strip()}"
        return
    if "--config" in argv:  # studies / benchmarks: the config and the --set keys at least
        sets = [argv[i + 1] for i, w in enumerate(argv) if w == "--set"]
        load_run_config(REPO / argv[argv.index("--config") + 1], sets)


def test_a_subcommand_is_checked_as_well(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    _check_module("argse.stages", ["--set", f"output_dir={tmp_path}", "prune", "--dry-run"], capsys)
    assert not list(tmp_path.iterdir())  # printed only


def _make_recipe(words: list[str]) -> list[str]:
    """The commands ``make`` would run (``make -n``): a missing target fails here."""
    proc = subprocess.run(["make", "-n", *words[1:]], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(words)}: {proc.stderr.strip()}"
    return [line for line in proc.stdout.splitlines() if " -m argse." in line and "pip install" not in line]


@pytest.mark.parametrize("page,command,in_prose", COMMANDS, ids=[f"{p}: {c[:60]}" for p, c, _ in COMMANDS])
def test_the_command_works_as_written(page, command, in_prose, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # nothing a command might write lands outside tmp_path
    words = shlex.split(command, comments=True)
    bare = len(words) == (3 if words[0] == "python" else 2)  # a name in a sentence: `make predict`
    template = any(t in command for t in TEMPLATE) or (in_prose and bare)
    if words[0] == "make":
        recipe = _make_recipe(words)
        if template:
            return
        for line in recipe:
            _check_module(*_module_argv(shlex.split(line)), capsys)
        return
    module, argv = _module_argv(words)
    if template:
        assert importlib.util.find_spec(module) is not None, f"{page}: no module {module}"
        return
    _check_module(module, argv, capsys)


def test_readme_s_venv_line_works_in_a_fresh_shell(tmp_path):
    """The README's first lines say to activate .venv; in a fresh shell (no venv on PATH, no PYTHONPATH, another
    folder) that line and a command of the README work as written."""
    activate = REPO / ".venv" / "bin" / "activate"
    if not activate.is_file():
        pytest.skip("no .venv here (make creates it)")
    assert "source .venv/bin/activate" in (REPO / "README.md").read_text().split("## ", 1)[0]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    script = f"cd {shlex.quote(str(REPO))} && source .venv/bin/activate && cd {shlex.quote(str(tmp_path))} && python -m argse.experts"
    out = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "decoupling" in out.stdout
