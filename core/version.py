"""Which code this process runs, in the words a deployment uses for it.

On a server (ansible's pbx role) the release directory holds `.installed`, the
release name: the git commit of the controller's checkout, with a content hash
appended when the files differed from it (ansible/roles/pbx/files/build_release.py).
In a checkout, the commit from git, "+changes" when the work tree differs.
Read once per process: it names the code this process loaded, which is what a
restart after an upgrade changes (sipd records its own in the database, see
core/services.py, so the panel can show both).
"""

from __future__ import annotations

import functools
import subprocess

from core.config import ROOT

UNKNOWN = "unknown"


@functools.cache
def code_version() -> str:
    installed = ROOT / ".installed"
    try:
        name = installed.read_text().strip()
    except OSError:
        name = ""
    if name:
        return name
    return _from_git() or UNKNOWN


def _git(*args: str) -> str | None:
    try:
        result = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True,
                                timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.decode().strip()


def _from_git() -> str | None:
    commit = _git("rev-parse", "--short=12", "HEAD")
    if not commit:
        return None
    # Tracked files changed since the commit (untracked ones, such as var/, do not count).
    changed = _git("status", "--porcelain", "--untracked-files=no")
    return f"{commit}+changes" if changed else commit
