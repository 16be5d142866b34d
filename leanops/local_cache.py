"""Immutable files fetched once per machine: a folder per key, filled completely or not at all, and
pruned by last use and total size.

A registered version's artifacts (model, training reference, holdout, recorded spec) never change once
registration wrote them, yet every drift check of every batch read them again through MLflow's artifact
proxy: at 25 models the MLflow server used more CPU than everything else together (docs/scale.md,
"Simulation results"). Fetched once into a worker's disk, a champion costs MLflow one download per
worker instead of one per check.

The cache would otherwise grow by a copy of every version a worker ever checked or evaluated. Each hit
stamps its entry's last use (the folder's mtime); after each new download, entries unused for
``keep_days`` go, then the least recently used ones while the total is over ``max_bytes``. An entry used
within the last ``EVICTION_GRACE_SECONDS`` is never evicted, and a reader whose entry was evicted under it
all the same fetches it again.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

# A reader holds an entry's path between finding it and reading it: seconds, for a large model.
EVICTION_GRACE_SECONDS = 600.0
# Downloads that died with their process (SIGKILL, OOM) leave a staging folder: gone after this long.
ABANDONED_STAGING_SECONDS = 3600.0


@dataclass(frozen=True)
class CacheLimits:
    max_bytes: int
    keep_days: float


@dataclass(frozen=True)
class PruneResult:
    root: str
    removed: tuple[str, ...]
    freed_bytes: int
    kept: int
    kept_bytes: int
    dry_run: bool


def entry(root: Path, key: str) -> Path:
    """The folder of ``key`` under ``root``: readable, and unique even where two keys read alike."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", key)[:80]
    return root / f"{readable}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def use_once_fetched(root: Path, key: str, fetch: Callable[[Path], Path], use: Callable[[Path], T],
                     limits: CacheLimits | None = None) -> T:
    """``use(path)`` on the cached copy of ``key``, which ``fetch(folder)`` downloads into an empty folder
    (returning the path it wrote, a file or folder inside it) on the first call for ``key`` on this
    machine only. After a download, the cache is pruned to ``limits``.

    If another process evicted the entry while ``use`` read it, the entry is fetched again and used once
    more; any other failure of ``use`` is the caller's."""
    path = _fetch_once(root, key, fetch, limits)
    try:
        return use(path)
    except Exception:
        if entry(root, key).is_dir():
            raise
        return use(_fetch_once(root, key, fetch, limits))


def _fetch_once(root: Path, key: str, fetch: Callable[[Path], Path], limits: CacheLimits | None) -> Path:
    # The download goes to a private folder renamed into place when complete, so a reader never sees half
    # a copy, a failed download leaves nothing behind, and of two processes fetching at once one copy stays.
    final = entry(root, key)
    found = _stamped(final)
    if found is not None:
        return found
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".fetching-", dir=root))
    try:
        written = fetch(staging)
        (staging / ".path").write_text(str(Path(written).relative_to(staging)))
        (staging / ".size").write_text(str(_size(staging)))
        try:
            staging.rename(final)
        except OSError:  # another process put it in place first: theirs is as good
            if not final.is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if limits is not None:
        prune(root, limits)
    found = _stamped(final)
    if found is None:  # evicted between the rename and here: only under a cap smaller than one entry
        raise OSError(f"{final} was evicted as soon as it was fetched: the cache's size limit is below one entry")
    return found


def _stamped(final: Path) -> Path | None:
    """The entry's path, its last use stamped now; None if it is not (or no longer) there."""
    try:
        os.utime(final)
        return final / (final / ".path").read_text()
    except FileNotFoundError:
        return None


def prune(root: Path, limits: CacheLimits, dry_run: bool = False, now: float | None = None) -> PruneResult:
    """Remove entries unused for ``limits.keep_days``, then the least recently used while the total is over
    ``limits.max_bytes``; never one used within ``EVICTION_GRACE_SECONDS``. Also removes what downloads
    and evictions that died with their process left over an hour ago."""
    now = time.time() if now is None else now
    entries = []  # (last used, bytes, folder)
    abandoned = []
    for child in (root.iterdir() if root.is_dir() else ()):
        try:
            used = child.stat().st_mtime
            if child.name.startswith((".fetching-", ".evicting-")):
                if now - used > ABANDONED_STAGING_SECONDS:
                    abandoned.append(child)
                continue
            if child.name.startswith(".") or not child.is_dir():
                continue
            entries.append((used, _recorded_size(child), child))
        except FileNotFoundError:  # removed by another process meanwhile
            continue
    entries.sort()
    total = sum(size for _, size, _ in entries)
    removed, freed = [], 0
    for used, size, folder in entries:
        idle = now - used
        if idle < EVICTION_GRACE_SECONDS:
            break  # sorted by last use: every later one is newer still
        if idle <= limits.keep_days * 86_400 and total <= limits.max_bytes:
            continue
        if dry_run or _evict(folder):
            removed.append(folder.name)
            freed += size
            total -= size
    if not dry_run:
        for folder in abandoned:
            shutil.rmtree(folder, ignore_errors=True)
    return PruneResult(str(root), tuple(removed), freed, len(entries) - len(removed), total, dry_run)


def _evict(folder: Path) -> bool:
    # Renamed away first, so no reader finds half a folder while it is deleted; of two pruners, one wins.
    doomed = folder.with_name(f".evicting-{folder.name}-{os.getpid()}")
    try:
        folder.rename(doomed)
    except FileNotFoundError:
        return False
    shutil.rmtree(doomed, ignore_errors=True)
    return True


def _recorded_size(folder: Path) -> int:
    try:
        return int((folder / ".size").read_text())
    except (FileNotFoundError, ValueError):  # written before sizes were recorded
        return _size(folder)


def _size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
