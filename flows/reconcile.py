"""reconcile: re-announce landed batches that no drift check has processed, so a lost notification only delays work."""

from __future__ import annotations

from prefect import flow

from tasks.alert import alert_on_failure
from tasks.manifest import announce_batches, find_checks_in_flight, find_unprocessed_batches


@flow(name="reconcile", log_prints=True, on_failure=[alert_on_failure])
def reconcile(prefix: str = "", min_age_minutes: float = 15.0, limit: int = 100) -> list[str]:
    """Emit ``leanops.batch.landed`` for every object under the incoming prefix (or ``prefix``: a key
    prefix in the bucket or a URI) that the drift-monitor has not marked processed and no unfinished
    run is about to check; a batch that landed before its model's spec waits until the spec loads. Objects younger than ``min_age_minutes`` are left to their own notification;
    at most ``limit`` (the oldest) are announced per run, so a first run over a full bucket cannot
    start thousands of checks at once. Returns the announced URIs.
    """
    in_flight = find_checks_in_flight()
    waiting = find_unprocessed_batches(prefix, min_age_minutes, in_flight, limit)
    return announce_batches(waiting)


if __name__ == "__main__":
    from flows._cli import run_from_command_line

    run_from_command_line(reconcile)
