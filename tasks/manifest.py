"""Stage: the manifest of processed batches (leanops.manifest) and the reconciliation that reads it."""

from __future__ import annotations

import logging
from datetime import timedelta
from uuid import UUID

from prefect import get_client, get_run_logger, task
from prefect.client.schemas.filters import (
    FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event
from prefect.runtime import flow_run as current_flow_run

from leanops import events, manifest, monitoring, storage
from leanops.errors import NEVER_RETRY, SpecError
from leanops.manifest import ProcessedMark
from leanops.results import MonitorOutcome
from leanops.settings import get_settings
from tasks._policies import RETRY_IO
from tasks._progress import progress_artifact


@task(cache_policy=NO_CACHE, **RETRY_IO)
def mark_processed(outcome: MonitorOutcome) -> ProcessedMark | None:
    """Record that this run processed its batch, so the reconciliation never announces it again."""
    mark = manifest.mark_processed(outcome.batch_uri, outcome.model, outcome.status, str(current_flow_run.id or ""))
    if mark is None:
        get_run_logger().info("%s is a window of batches, not one landed object: nothing to mark", outcome.batch_uri)
    else:
        get_run_logger().info("%s marked processed (%s)", outcome.batch_uri, outcome.status)
    return mark


def mark_rejected_batch(flow, flow_run, state) -> None:
    """Flow hook: a batch that failed for good (unreadable, contract broken) counts as processed, or the
    reconciliation would re-run it, and alert, every hour. A batch whose model has no spec yet waits for
    it (announced again once the spec loads). A transient failure (an outage that outlasted the
    retries) stays unmarked: the reconciliation retries it later."""
    try:
        state.result()
    except NEVER_RETRY as exc:
        error = exc
    except BaseException:  # noqa: BLE001 - transient or unknown: leave it for the reconciliation
        return
    else:
        return
    log = logging.getLogger("leanops.manifest")
    params = flow_run.parameters
    try:
        target = monitoring.resolve_target(
            params.get("spec", ""), params.get("batch_uri", ""), params.get("bucket", ""), params.get("key", ""),
            get_settings().s3_incoming_prefix, params.get("version_id", ""),
        )
        if isinstance(error, SpecError) and not manifest.spec_loads(target.spec):
            # The batch landed before its spec (or while the spec is broken): nothing is wrong with the
            # batch, so it waits, and the reconciliation announces it once the spec loads.
            manifest.mark_waiting_for_spec(target.batch_uri, target.spec, str(error), str(flow_run.id))
            log.info("%s waits for the spec of %s: %s", target.batch_uri, target.spec, error)
            return
        manifest.mark_processed(target.batch_uri, target.spec, manifest.rejected_status(error), str(flow_run.id))
    except Exception as exc:  # noqa: BLE001 - a hook must not raise; unmarked, the batch is re-checked later
        log.warning("could not mark the rejected batch of run %s as processed: %s", flow_run.name, exc)
        return
    log.info("%s marked processed (rejected: %s)", target.batch_uri, type(error).__name__)


# Runs that exist but have not finished: a check is coming for their batch (e.g. a backlog while no worker runs).
_UNFINISHED = [StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING, StateType.PAUSED]


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def find_checks_in_flight(flow_name: str = "drift-monitor") -> list[str]:
    """URIs of the batches that unfinished runs of ``flow_name`` will check."""
    uris: list[str] = []
    page = 200
    with get_client(sync_client=True) as client:
        for offset in range(0, 100_000, page):
            runs = client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
                flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=_UNFINISHED))),
                limit=page, offset=offset,
            )
            uris.extend(filter(None, (manifest.checked_uri(run.parameters) for run in runs)))
            if len(runs) < page:
                break
    get_run_logger().info("%d batch checks scheduled or running", len(uris))
    return uris


@task(cache_policy=NO_CACHE, **RETRY_IO)
def find_unprocessed_batches(prefix: str, min_age_minutes: float, in_flight: list[str], limit: int) -> list[storage.ObjectInfo]:
    """Landed objects no check has processed or is about to, oldest first, at most ``limit``."""
    settings = get_settings()
    prefix_uri = manifest.incoming_uri(prefix, settings)
    with progress_artifact("reconcile-listing", f"Listing {prefix_uri} and the processed markers") as report:
        waiting = manifest.find_unprocessed(
            prefix_uri, settings.s3_incoming_suffix, timedelta(minutes=min_age_minutes), in_flight, settings, on_progress=report
        )
    get_run_logger().info(
        "%d landed batches under %s not processed%s", len(waiting), prefix_uri,
        f"; announcing the oldest {limit}" if len(waiting) > limit else "",
    )
    return waiting[:limit]


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=1)
def announce_batches(objects: list[storage.ObjectInfo]) -> list[str]:
    """Emit leanops.batch.landed for each object. The id is the bridge's for a notification without a
    sequencer (moto's); AWS notifications carry one, which a listing cannot see, so there the ids
    differ and the markers and the in-flight check alone keep a batch from being checked twice."""
    announced = []
    for info in objects:
        bucket, key = storage.split_s3_uri(info.uri)
        landed = events.batch_landed(bucket, key, None, None, info.size, info.etag)
        emit_event(event=landed.event, resource=landed.resource, payload=landed.payload, id=UUID(landed.event_id))
        announced.append(info.uri)
    get_run_logger().info("announced %d batches: %s", len(announced), ", ".join(announced[:20]))
    return announced
