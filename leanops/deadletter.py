"""The S3 bridge's dead-letter queue: what is in it and why, and sending messages back (or dropping them).

A notification lands there when the bridge could not read it or Prefect refused its events for good
(the bridge writes its reason as the message attribute ``reason``), or when SQS's redrive policy moved
it after ``sqs_max_receive_count`` receives (no reason attribute: e.g. the bridge kept failing on it).
Nothing there is checked until a person looks: ``leanops dlq list``, then ``redrive`` or ``drop``.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from leanops import storage
from leanops.bridge import translate
from leanops.errors import MalformedNotification
from leanops.settings import Settings, get_settings

# How long listed messages stay hidden from others while the listing runs; all are released after it.
_LISTING_VISIBILITY_SECONDS = 30


@dataclass(frozen=True)
class DeadLetter:
    message_id: str
    reason: str
    objects: tuple[str, ...]
    """The s3:// URIs the notification announces; empty when it cannot be read as one."""
    body: str


def _reason(message: storage.QueueMessage, settings: Settings) -> str:
    return message.attributes.get("reason") or (
        f"no reason recorded: moved by the queue's redrive policy after {settings.sqs_max_receive_count} receives"
    )


def _objects(body: str) -> tuple[str, ...]:
    try:
        return tuple(f"s3://{e.payload['bucket']}/{e.payload['key']}" for e in translate(body))
    except MalformedNotification:
        return ()


def _receive_all(dead_letter_url: str, settings: Settings, limit: int) -> list[storage.QueueMessage]:
    """Every message of the queue (up to ``limit``), each received once and hidden while this runs."""
    seen: dict[str, storage.QueueMessage] = {}
    while len(seen) < limit:
        batch = storage.receive_messages(
            dead_letter_url, max_messages=min(10, limit - len(seen)), wait_seconds=1, settings=settings,
            visibility_timeout=_LISTING_VISIBILITY_SECONDS,
        )
        fresh = [m for m in batch if m.message_id not in seen]
        if not fresh:
            break
        seen.update((m.message_id, m) for m in fresh)
    return list(seen.values())


def _dead_letter_url(settings: Settings) -> str:
    return storage.queue_url(settings.sqs_dead_letter_queue_name, settings)


def _letter(message: storage.QueueMessage, settings: Settings) -> DeadLetter:
    return DeadLetter(message.message_id, _reason(message, settings), _objects(message.body), message.body)


def list_dead_letters(settings: Settings | None = None, limit: int = 100) -> list[DeadLetter]:
    """The messages in the dead-letter queue (up to ``limit``), left in it."""
    settings = settings or get_settings()
    url = _dead_letter_url(settings)
    messages = _receive_all(url, settings, limit)
    for message in messages:
        storage.release_message(url, message.receipt_handle, settings)
    return [_letter(m, settings) for m in messages]


def _take(message_ids: Collection[str] | None, settings: Settings, act) -> list[DeadLetter]:
    """Apply ``act(url, message)`` to the chosen messages (None: all), release the others."""
    url = _dead_letter_url(settings)
    done = []
    for message in _receive_all(url, settings, limit=10_000):
        if message_ids is None or message.message_id in message_ids:
            act(url, message)
            done.append(_letter(message, settings))
        else:
            storage.release_message(url, message.receipt_handle, settings)
    return done


def redrive(message_ids: Collection[str] | None = None, settings: Settings | None = None) -> list[DeadLetter]:
    """Send the chosen messages (None: every one) back to the bridge's queue, unchanged, and remove them
    here: the bridge reads them again (a duplicate notification is harmless, its event id is the same)."""
    settings = settings or get_settings()
    main_url = storage.queue_url(settings.sqs_queue_name, settings)

    def move(url: str, message: storage.QueueMessage) -> None:
        storage.send_message(main_url, message.body, settings)  # sent before deleted: never lost in between
        storage.delete_message(url, message.receipt_handle, settings)

    return _take(message_ids, settings, move)


def drop(message_ids: Collection[str], settings: Settings | None = None) -> list[DeadLetter]:
    """Delete the chosen messages for good (e.g. a test notification nobody needs checked)."""
    settings = settings or get_settings()
    return _take(set(message_ids), settings, lambda url, message: storage.delete_message(url, message.receipt_handle, settings))
