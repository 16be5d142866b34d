"""A Prefect progress artifact fed by the library's progress callbacks (leanops/progress.py)."""

from __future__ import annotations

import time
from contextlib import contextmanager, suppress
from typing import Iterator
from uuid import UUID

from prefect import get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact

from leanops.progress import Progress

UPDATE_EVERY_SECONDS = 1.0  # one API call per object or trial would flood the server on small ones


@contextmanager
def progress_artifact(key: str, description: str) -> Iterator[Progress]:
    """Create the artifact at 0 %, hand out a callback that updates it at most once a second (and always
    at 100 %), and leave it at 100 % when the work ends without an error. On an error it keeps the last
    share and says where the work stopped."""
    artifact_id: UUID = create_progress_artifact(progress=0.0, key=key, description=description)
    last = {"at": time.monotonic(), "share": 0.0, "done": "", "sent": (0.0, "")}

    def report(share: float, done: str) -> None:
        last["share"], last["done"] = share, done
        if share >= 1.0 or time.monotonic() - last["at"] >= UPDATE_EVERY_SECONDS:
            last["at"] = time.monotonic()
            try:
                update_progress_artifact(artifact_id, progress=round(100.0 * min(share, 1.0), 1), description=f"{description}: {done}")
                last["sent"] = (share, done)
            except Exception as exc:  # noqa: BLE001 - a display that fails once must not fail the work it shows
                get_run_logger().warning("progress artifact %s not updated (%s): %s", key, type(exc).__name__, done)

    try:
        yield report
    except BaseException:
        with suppress(Exception):  # the work's own error is the one to report, not a failed update
            update_progress_artifact(artifact_id, progress=round(100.0 * min(last["share"], 1.0), 1),
                                     description=f"{description}: stopped by an error after {last['done'] or 'nothing'}")
        raise
    if last["sent"] != (1.0, last["done"]):  # the last report may have sent 100 % already
        update_progress_artifact(artifact_id, progress=100.0, description=f"{description}: {last['done'] or 'done'}")
