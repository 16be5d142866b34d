"""Immutable files fetched once per machine: a folder per key, filled completely or not at all.

A registered version's artifacts (model, training reference, holdout, recorded spec) never change once
registration wrote them, yet every drift check of every batch read them again through MLflow's artifact
proxy: at 25 models the MLflow server used more CPU than everything else together (docs/scale.md,
"Simulation results"). Fetched once into a worker's disk, a champion costs MLflow one download per
worker instead of one per check.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def entry(root: Path, key: str) -> Path:
    """The folder of ``key`` under ``root``: readable, and unique even where two keys read alike."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", key)[:80]
    return root / f"{readable}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def fetch_once(root: Path, key: str, fetch: Callable[[Path], Path]) -> Path:
    """The cached copy of ``key``: ``fetch(folder)`` downloads into an empty folder and returns the path it
    wrote (a file or folder inside it), on the first call for ``key`` on this machine only.

    The download goes to a private folder renamed into place when complete, so a reader never sees half a
    copy, a failed download leaves nothing behind, and of two processes fetching at once one copy stays."""
    final = entry(root, key)
    if final.is_dir():
        return final / (final / ".path").read_text()
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".fetching-", dir=root))
    try:
        written = fetch(staging)
        (staging / ".path").write_text(str(Path(written).relative_to(staging)))
        try:
            staging.rename(final)
        except OSError:  # another process put it in place first: theirs is as good
            if not final.is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final / (final / ".path").read_text()
