"""A small JSON document that one process at a time reads, changes and writes back: alert state.

Where it lives decides who shares it. A local path (the embedded default) is shared by the processes of
one machine, through ``flock``. An ``s3://`` URI (the production profile) is shared by every worker:
the lock is a lease object beside the document, created only if absent (S3's ``If-None-Match: *``),
taken over only when expired and only over the very version that expired (``If-Match``), deleted on
release. A holder that dies leaves a lease that expires after ``lease_seconds``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from leanops import storage
from leanops.errors import ObjectNotFound, TransientIOError
from leanops.settings import Settings

logger = logging.getLogger(__name__)


def _dump(state: dict[str, Any]) -> str:
    return json.dumps(state, indent=1, sort_keys=True)


@contextlib.contextmanager
def locked_json(
    uri: str, empty: Callable[[], dict[str, Any]], valid: Callable[[Any], bool], *,
    settings: Settings | None = None, lease_seconds: float = 120.0, wait_seconds: float = 60.0,
) -> Iterator[dict[str, Any]]:
    """Exclusive access to the document at ``uri``: yields it (``empty()`` if absent or unreadable), and
    writes it back on exit if it changed. Raises TransientIOError if the lock stays taken ``wait_seconds``."""
    if storage.is_s3(uri):
        with _object_lease(uri, settings, lease_seconds, wait_seconds):
            yield from _edit(uri, empty, valid, settings)
        return
    path = storage.local_path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield from _edit(uri, empty, valid, settings)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _edit(uri: str, empty, valid, settings: Settings | None) -> Iterator[dict[str, Any]]:
    state = _read(uri, empty, valid, settings)
    before = _dump(state)
    yield state
    if _dump(state) != before:
        _write(uri, state, settings)


def _read(uri: str, empty, valid, settings: Settings | None) -> dict[str, Any]:
    try:
        state = json.loads(storage.read_bytes(uri, settings))
        if not valid(state):
            raise ValueError("not the expected shape")
        return state
    except ObjectNotFound:
        return empty()
    except ValueError as exc:
        # Losing this state costs at worst one repeated alert; say so loudly and start afresh.
        logger.error("state %s is unreadable (%s); starting a fresh one", uri, exc)
        return empty()


def _write(uri: str, state: dict[str, Any], settings: Settings | None) -> None:
    if storage.is_s3(uri):
        storage.write_bytes(uri, _dump(state).encode(), settings)
        return
    path = storage.local_path(uri)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(_dump(state))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def _object_lease(uri: str, settings: Settings | None, lease_seconds: float, wait_seconds: float) -> Iterator[None]:
    lease_uri = f"{uri}.lease"
    holder = uuid.uuid4().hex
    deadline = time.monotonic() + wait_seconds
    delay = 0.05
    while True:
        lease = json.dumps({"holder": holder, "expires": time.time() + lease_seconds}).encode()
        if storage.write_bytes_if(lease_uri, lease, absent=True, settings=settings):
            break
        try:
            current, etag = storage.read_bytes_with_etag(lease_uri, settings)
            expired = json.loads(current).get("expires", 0) < time.time()
        except ObjectNotFound:
            continue  # released between our two calls: try to create it again
        except ValueError:
            expired, etag = True, etag  # a torn lease: nobody can be said to hold it
        if expired and storage.write_bytes_if(lease_uri, lease, etag=etag, settings=settings):
            logger.warning("took over the expired lease %s", lease_uri)
            break
        if time.monotonic() > deadline:
            raise TransientIOError(f"{uri}: still locked by another process after {wait_seconds:.0f} s ({lease_uri})")
        time.sleep(delay)
        delay = min(delay * 2, 1.0)
    try:
        yield
    finally:
        storage.delete_objects([lease_uri], settings)
