"""Listen to Prefect's event stream for alias moves, so the endpoint reloads a champion within a second
of its promotion or rollback instead of at the next alias check (which stays as the fallback)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from leanops import events

log = logging.getLogger(__name__)

ALIAS_MOVES = (events.MODEL_PROMOTED, events.MODEL_ROLLED_BACK)


def model_of(event) -> str | None:
    """The model an alias-move event is about (payload ``model_name``, else the resource's label)."""
    name = (event.payload or {}).get("model_name")
    if name:
        return str(name)
    return event.resource.get("leanops.model")


async def follow_alias_moves(on_move: Callable[[str, str], None], retry_seconds: float = 5.0) -> None:
    """Call ``on_move(model, event name)`` for every alias move, for as long as the task runs.

    A lost connection is retried (Prefect's subscriber backfills the gap); meanwhile the alias check
    keeps the endpoint correct, only slower to follow."""
    from prefect.events.clients import get_events_subscriber
    from prefect.events.filters import EventFilter, EventNameFilter

    event_filter = EventFilter(event=EventNameFilter(name=list(ALIAS_MOVES)))
    while True:
        try:
            async with get_events_subscriber(filter=event_filter, reconnect_on_clean_close=True) as subscriber:
                log.info("following %s from Prefect", ", ".join(ALIAS_MOVES))
                async for event in subscriber:
                    name = model_of(event)
                    if name:
                        on_move(name, event.event)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - Prefect unreachable: the alias check covers the gap; retry the stream
            log.warning("the Prefect event stream failed (%s: %s); retrying in %.0f s", type(exc).__name__, exc, retry_seconds)
        await asyncio.sleep(retry_seconds)
