"""The S3 event bridge as an AWS Lambda handler: S3 notifications -> Prefect events.

Standard library only. The package is this file plus ``leanops/__init__.py``, ``leanops/bridge.py``,
``leanops/events.py`` and ``leanops/errors.py`` (and ``deployments/__init__.py``); handler:
``deployments.lambda_handler.handler``. The translation is the same code the long-running bridge uses.

Environment:
  PREFECT_API_URL                  e.g. https://prefect.example.com/api (required)
  PREFECT_API_KEY                  sent as ``Authorization: Bearer ...`` when set
  LEANOPS_S3_BUCKET_ALLOW_LIST     JSON list or comma-separated names; empty = every bucket
  LEANOPS_S3_INCOMING_PREFIX       default "incoming/"
  LEANOPS_S3_INCOMING_SUFFIX       default ".parquet"
  LEANOPS_S3_SCORING_PREFIX        default "to-score/" (objects there become leanops.batch.to_score)
  LEANOPS_S3_SCORING_SUFFIXES      JSON list or comma-separated; default ".parquet,.csv"

Triggers: an SQS queue (returns ``batchItemFailures`` so only failed records are retried; a
malformed record keeps failing until the queue's redrive policy moves it to the dead-letter queue),
or S3 / SNS / EventBridge invoking the function directly (any failure raises, so Lambda retries).
"""

from __future__ import annotations

import json
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from leanops.bridge import ObjectFilter, event_document, translate
from leanops.errors import MalformedNotification

log = logging.getLogger("leanops.lambda")
log.setLevel(logging.INFO)

# Same defaults as leanops.settings.Settings (tests check they agree): pydantic is not shipped here.
DEFAULT_PREFIX = "incoming/"
DEFAULT_SUFFIX = ".parquet"
DEFAULT_SCORING_PREFIX = "to-score/"
DEFAULT_SCORING_SUFFIXES = (".parquet", ".csv")


class PostFailed(Exception):
    """Prefect did not accept the events."""


def _names(raw: str) -> list[str]:
    raw = raw.strip()
    if raw.startswith("["):
        return json.loads(raw)  # the pydantic-settings spelling of a list
    return [b.strip() for b in raw.split(",") if b.strip()]


def object_filter(environ: Mapping[str, str]) -> ObjectFilter:
    return ObjectFilter.of(
        _names(environ.get("LEANOPS_S3_BUCKET_ALLOW_LIST", "")),
        environ.get("LEANOPS_S3_INCOMING_PREFIX", DEFAULT_PREFIX),
        environ.get("LEANOPS_S3_INCOMING_SUFFIX", DEFAULT_SUFFIX),
    )


def scoring_filter(environ: Mapping[str, str]) -> ObjectFilter:
    suffixes = environ.get("LEANOPS_S3_SCORING_SUFFIXES")
    return ObjectFilter.of(
        _names(environ.get("LEANOPS_S3_BUCKET_ALLOW_LIST", "")),
        environ.get("LEANOPS_S3_SCORING_PREFIX", DEFAULT_SCORING_PREFIX),
        DEFAULT_SCORING_SUFFIXES if suffixes is None else _names(suffixes),
    )


def post_events(documents: list[dict[str, Any]], environ: Mapping[str, str], timeout: float = 10.0) -> None:
    api_url = environ.get("PREFECT_API_URL")
    if not api_url:
        raise PostFailed("PREFECT_API_URL is not set")
    headers = {"Content-Type": "application/json"}
    if environ.get("PREFECT_API_KEY"):
        headers["Authorization"] = f"Bearer {environ['PREFECT_API_KEY']}"
    request = urllib.request.Request(  # noqa: S310 - the URL is the operator's own Prefect API
        api_url.rstrip("/") + "/events", data=json.dumps(documents).encode(), headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            status = response.status
    except urllib.error.HTTPError as exc:
        raise PostFailed(f"Prefect answered {exc.code}: {exc.read()[:500].decode(errors='replace')}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise PostFailed(f"cannot reach Prefect at {api_url}: {exc}") from exc
    if not 200 <= status < 300:
        raise PostFailed(f"Prefect answered {status}")


def relay(message: str | Mapping[str, Any], environ: Mapping[str, str]) -> int:
    """Translate one notification and post its events; returns how many were accepted."""
    events = translate(message, object_filter(environ), scoring_filter(environ))
    if events:
        post_events([event_document(e) for e in events], environ)
    for event in events:
        log.info("emitted %s %s (id %s)", event.event, event.resource_id, event.event_id)
    return len(events)


def handler(event: Mapping[str, Any], context: object = None, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    environ = os.environ if environ is None else environ
    records = event.get("Records") if isinstance(event, Mapping) else None
    if isinstance(records, list) and records and all(isinstance(r, Mapping) for r in records):
        sources = {r.get("eventSource") or r.get("EventSource") for r in records}
        if sources == {"aws:sqs"}:
            return _from_sqs(records, environ)
        if sources == {"aws:sns"}:
            return {"emitted": sum(relay(r["Sns"], environ) for r in records)}
    return {"emitted": relay(event, environ)}


def _from_sqs(records: list[Mapping[str, Any]], environ: Mapping[str, str]) -> dict[str, Any]:
    failures = []
    for record in records:
        try:
            relay(record.get("body", ""), environ)
        except MalformedNotification as exc:
            log.error("malformed message %s (left to the redrive policy): %s", record.get("messageId"), exc)
            failures.append({"itemIdentifier": record.get("messageId")})
        except PostFailed as exc:
            log.warning("message %s not relayed, SQS will retry it: %s", record.get("messageId"), exc)
            failures.append({"itemIdentifier": record.get("messageId")})
    return {"batchItemFailures": failures}
