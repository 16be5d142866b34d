"""S3 notifications in, ``leanops.batch.landed`` (or ``leanops.batch.to_score``) events out: pure translation.

Standard library only (this module, ``events.py`` and ``errors.py``), so an AWS Lambda package can
ship these three files without dependencies; the long-running relay (``deployments/s3_bridge.py``)
and the Lambda handler (``deployments/lambda_handler.py``) share this code.

Three delivery shapes are read, as AWS produces them:

- S3 event notifications: ``{"Records": [{"eventSource": "aws:s3", "s3": {...}}]}``
- the same wrapped by SNS: ``{"Type": "Notification", "Message": "<json string>"}``
- EventBridge: ``{"source": "aws.s3", "detail-type": "Object Created", "detail": {...}}``

Object keys arrive URL-encoded (a space as ``+``) and are decoded here. Objects are routed by prefix: under
the scoring filter's prefix they are batches to score (``flows/score.py``), under the incoming filter's
batches that landed (drift checks); anything else is ignored.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import unquote_plus

from leanops.errors import MalformedNotification
from leanops.events import LifecycleEvent, batch_landed, batch_to_score

_TEST_EVENT = "s3:TestEvent"
_CREATED_PREFIX = "ObjectCreated:"
_EVENTBRIDGE_CREATED = "Object Created"


@dataclass(frozen=True)
class ObjectFilter:
    """Which objects count: bucket allow-list (empty means every bucket), key prefix and suffix (or suffixes)."""

    buckets: frozenset[str] = frozenset()
    prefix: str = ""
    suffix: str | tuple[str, ...] = ""

    @classmethod
    def of(cls, buckets: Iterable[str] = (), prefix: str = "", suffix: str | Iterable[str] = "") -> ObjectFilter:
        return cls(frozenset(buckets), prefix, suffix if isinstance(suffix, str) else tuple(suffix))

    def accepts(self, bucket: str, key: str) -> bool:
        if self.buckets and bucket not in self.buckets:
            return False
        return key.startswith(self.prefix) and key.endswith(self.suffix)


def translate(
    message: str | bytes | Mapping[str, Any],
    object_filter: ObjectFilter = ObjectFilter(),
    scoring_filter: ObjectFilter | None = None,
) -> list[LifecycleEvent]:
    """One queue message body to zero or more events: ``batch_to_score`` for an object ``scoring_filter``
    accepts (checked first: a batch sent for scoring is never a landed training batch), else
    ``batch_landed`` for one ``object_filter`` accepts.

    Zero events is a normal answer (a test event, a deletion, an object outside the filters);
    a message we cannot read raises :class:`MalformedNotification`.
    """
    routed = []
    for event in _events(_load(message, "message body")):
        bucket, key = event.payload["bucket"], event.payload["key"]
        if scoring_filter is not None and scoring_filter.accepts(bucket, key):
            routed.append(batch_to_score(event))
        elif object_filter.accepts(bucket, key):
            routed.append(event)
    return routed


def event_document(event: LifecycleEvent, now: datetime | None = None) -> dict[str, Any]:
    """The JSON Prefect's ``POST /api/events`` takes for one event (a list of these is the body)."""
    if event.event_id is None:
        raise ValueError(f"{event.event}: the bridge only sends events with a deterministic id")
    occurred = event.occurred or (now or datetime.now(timezone.utc)).isoformat()
    return {
        "id": event.event_id,
        "occurred": occurred,
        "event": event.event,
        "resource": event.resource,
        "related": [],
        "payload": event.payload,
    }


# --- parsing --------------------------------------------------------------------------------------


def _load(message: str | bytes | Mapping[str, Any], what: str) -> Mapping[str, Any]:
    if isinstance(message, Mapping):
        return message
    if isinstance(message, (bytes, bytearray)):
        try:
            message = message.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedNotification(f"{what} is not UTF-8: {exc}") from exc
    if not isinstance(message, str):
        raise MalformedNotification(f"{what} is a {type(message).__name__}, expected JSON text")
    try:
        document = json.loads(message)
    except json.JSONDecodeError as exc:
        raise MalformedNotification(f"{what} is not JSON ({exc}): {_excerpt(message)}") from exc
    if not isinstance(document, dict):
        raise MalformedNotification(f"{what} is JSON {type(document).__name__}, expected an object: {_excerpt(message)}")
    return document


def _events(document: Mapping[str, Any]) -> list[LifecycleEvent]:
    if "Type" in document:
        return _from_sns(document)
    if document.get("Event") == _TEST_EVENT:
        return []  # S3 sends one when the notification is configured
    if "Records" in document:
        return _from_records(document["Records"])
    if "detail-type" in document:
        return _from_eventbridge(document)
    raise MalformedNotification(f"not an S3 notification (keys: {sorted(document)[:8]})")


def _from_sns(document: Mapping[str, Any]) -> list[LifecycleEvent]:
    if document["Type"] != "Notification":
        raise MalformedNotification(f"SNS message of type {document['Type']!r}, expected 'Notification'")
    inner = document.get("Message")
    if not isinstance(inner, str):
        raise MalformedNotification("SNS notification without a 'Message' string")
    return _events(_load(inner, "SNS 'Message'"))


def _from_records(records: Any) -> list[LifecycleEvent]:
    if not isinstance(records, list):
        raise MalformedNotification(f"'Records' is a {type(records).__name__}, expected a list")
    events = []
    for index, record in enumerate(records):
        where = f"Records[{index}]"
        record = _mapping(record, where)
        if record.get("eventSource") != "aws:s3":
            raise MalformedNotification(f"{where}: eventSource {record.get('eventSource')!r}, expected 'aws:s3'")
        name = _text(record.get("eventName"), f"{where}.eventName")
        if not name.removeprefix("s3:").startswith(_CREATED_PREFIX):
            continue
        s3 = _mapping(record.get("s3"), f"{where}.s3")
        bucket = _mapping(s3.get("bucket"), f"{where}.s3.bucket")
        obj = _mapping(s3.get("object"), f"{where}.s3.object")
        events.append(
            _landed(
                bucket=_text(bucket.get("name"), f"{where}.s3.bucket.name"),
                raw_key=_text(obj.get("key"), f"{where}.s3.object.key"),
                size=obj.get("size"),
                etag=obj.get("eTag"),
                version_id=obj.get("versionId"),
                sequencer=obj.get("sequencer"),
                occurred=record.get("eventTime"),
                where=where,
            )
        )
    return events


def _from_eventbridge(document: Mapping[str, Any]) -> list[LifecycleEvent]:
    if document.get("source") != "aws.s3":
        raise MalformedNotification(f"EventBridge event from {document.get('source')!r}, expected 'aws.s3'")
    if document["detail-type"] != _EVENTBRIDGE_CREATED:
        return []
    detail = _mapping(document.get("detail"), "detail")
    bucket = _mapping(detail.get("bucket"), "detail.bucket")
    obj = _mapping(detail.get("object"), "detail.object")
    return [
        _landed(
            bucket=_text(bucket.get("name"), "detail.bucket.name"),
            raw_key=_text(obj.get("key"), "detail.object.key"),
            size=obj.get("size"),
            etag=obj.get("etag"),
            version_id=obj.get("version-id"),
            sequencer=obj.get("sequencer"),
            occurred=document.get("time"),
            where="detail",
        )
    ]


def _landed(*, bucket: str, raw_key: str, size: Any, etag: Any, version_id: Any, sequencer: Any, occurred: Any, where: str) -> LifecycleEvent:
    if size is not None and (isinstance(size, bool) or not isinstance(size, int)):
        raise MalformedNotification(f"{where}: object size {size!r} is not an integer")
    for label, value in (("etag", etag), ("version id", version_id), ("sequencer", sequencer)):
        if value is not None and not isinstance(value, str):
            raise MalformedNotification(f"{where}: object {label} {value!r} is not a string")
    key = unquote_plus(raw_key)
    if not key:
        raise MalformedNotification(f"{where}: empty object key")
    return batch_landed(bucket, key, version_id, sequencer, size, etag, occurred=_timestamp(occurred, where))


def _timestamp(value: Any, where: str) -> str | None:
    """S3's event time, normalised to ISO 8601 with an offset (Prefect refuses naive times)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise MalformedNotification(f"{where}: event time {value!r} is not a string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise MalformedNotification(f"{where}: event time {value!r} is not ISO 8601") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)  # AWS times are UTC
    return parsed.isoformat()


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise MalformedNotification(f"{where} is {'missing' if value is None else type(value).__name__}, expected an object")
    return value


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise MalformedNotification(f"{where} is {'missing' if value is None else repr(value)}, expected a non-empty string")
    return value


def _excerpt(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
