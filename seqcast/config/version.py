"""The code version a result is attributed to: seqcast's version plus the git commit it runs from."""

from __future__ import annotations

import subprocess
from pathlib import Path

import seqcast

CHECKOUT = Path(__file__).resolve().parents[2]  # the repository root of a source checkout


def code_version(checkout: Path = CHECKOUT) -> str:
    """seqcast's version plus the git commit of the checkout it runs from, when there is one.

    ``.dirty`` is appended when tracked files differ from that commit, so a result is never attributed to code
    that was not committed.
    """
    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=checkout, capture_output=True, text=True, timeout=5)

    try:
        commit = git("rev-parse", "--short", "HEAD").stdout.strip()
        dirty = bool(commit) and git("diff", "--quiet", "HEAD", "--").returncode == 1
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "", False
    if not commit:
        return seqcast.__version__
    return f"{seqcast.__version__}+{commit}" + (".dirty" if dirty else "")
