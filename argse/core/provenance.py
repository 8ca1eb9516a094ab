"""Which code made a page: the commit of the checkout argse runs from, so every results page can be traced."""

from __future__ import annotations

import subprocess
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parents[2]  # the checkout's root, when argse runs from one


def commit() -> str:
    """'commit 1a2b3c4' (with ', with local changes' when the checkout differs from it), or the installed version
    when argse does not run from a git checkout."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(HERE), *args], capture_output=True, text=True, timeout=10)
        return done.stdout.strip() if done.returncode == 0 else ""

    try:
        head = git("rev-parse", "--short=7", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", "argse", "experts", "configs"))
    except (OSError, subprocess.SubprocessError):
        head, dirty = "", False
    if head:
        return f"commit {head}" + (", with local changes to argse, experts or configs" if dirty else "")
    try:
        return f"argse {metadata.version('argse')} (not a git checkout)"
    except metadata.PackageNotFoundError:
        return "an unknown commit (not a git checkout)"
