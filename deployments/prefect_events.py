"""Post events to a Prefect server's ``POST /api/events`` and know whether they were accepted.

``prefect.events.emit_event`` buffers and sends later; the S3 bridge deletes a queue message only
once its events are accepted, so it posts itself and reads the answer (204 = accepted).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from typing import Any

import httpx

from leanops.errors import TransientIOError

# Statuses worth retrying; any other 4xx means the server will never take this body.
_RETRYABLE = {408, 425, 429}


class EventsRejected(Exception):
    """The Prefect server refused the events for good (4xx): retrying the same body cannot help."""


def auth_headers(environ: dict[str, str] | None = None) -> dict[str, str]:
    """Prefect Cloud's API key (bearer) or a self-hosted server's basic auth string, if set."""
    environ = dict(os.environ if environ is None else environ)
    if environ.get("PREFECT_API_KEY"):
        return {"Authorization": f"Bearer {environ['PREFECT_API_KEY']}"}
    if environ.get("PREFECT_API_AUTH_STRING"):
        token = base64.b64encode(environ["PREFECT_API_AUTH_STRING"].encode()).decode()
        return {"Authorization": f"Basic {token}"}
    return {}


class PrefectEvents:
    def __init__(self, api_url: str, headers: dict[str, str] | None = None, timeout: float = 10.0):
        self.url = api_url.rstrip("/") + "/events"
        self._client = httpx.Client(timeout=timeout, headers=headers or {})

    def post(self, documents: Sequence[dict[str, Any]]) -> None:
        """Send a batch; returns only once the server accepted it."""
        if not documents:
            return
        try:
            response = self._client.post(self.url, json=list(documents))
        except httpx.TransportError as exc:
            raise TransientIOError(f"cannot reach Prefect at {self.url}: {type(exc).__name__}: {exc}") from exc
        if response.is_success:
            return
        detail = response.text[:500]
        if response.status_code >= 500 or response.status_code in _RETRYABLE:
            raise TransientIOError(f"Prefect answered {response.status_code} at {self.url}: {detail}")
        raise EventsRejected(f"Prefect refused the events ({response.status_code}): {detail}")

    def healthy(self) -> bool:
        try:
            return self._client.get(self.url.removesuffix("/events") + "/health").is_success
        except httpx.TransportError:
            return False

    def close(self) -> None:
        self._client.close()
