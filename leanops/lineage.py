"""Where a model came from: code version and package version."""

from __future__ import annotations

import os
import subprocess
from functools import lru_cache
from importlib import metadata

from leanops.settings import PROJECT_ROOT


@lru_cache(maxsize=1)
def git_commit() -> str:
    """The checked-out commit (``+dirty`` when the tree has uncommitted changes), or LEANOPS_GIT_COMMIT."""
    if os.environ.get("LEANOPS_GIT_COMMIT"):
        return os.environ["LEANOPS_GIT_COMMIT"]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=PROJECT_ROOT, capture_output=True, text=True, check=True, timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}+dirty" if dirty else commit


def leanops_version() -> str:
    try:
        return metadata.version("leanops")
    except metadata.PackageNotFoundError:
        return "0+unknown"
