"""Emit lifecycle events (names and payloads come from leanops.events)."""

from __future__ import annotations

from uuid import UUID

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from leanops.events import LifecycleEvent


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=1)
def publish_event(event: LifecycleEvent) -> str:
    emitted = emit_event(
        event=event.event,
        resource=event.resource,
        payload=event.payload,
        id=UUID(event.event_id) if event.event_id else None,
    )
    get_run_logger().info("emitted %s for %s", event.event, event.resource_id)
    return str(emitted.id) if emitted else ""
