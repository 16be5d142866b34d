"""Prefect's REST API over plain HTTP, for what the library asks the server itself (leanops never imports
Prefect): whether it answers, whether its database does, its work pools and their workers.

Any HTTP answer is returned as it came (the caller decides what a 404 or a 401 means); no answer at all
(refused, timed out, reset) is a TransientIOError naming the URL.
"""

from __future__ import annotations

import base64
import json
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from leanops.errors import TransientIOError
from leanops.settings import Settings


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    """The JSON body, or its text when it is not JSON."""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def call(settings: Settings, method: str, path: str, body: Any = None, api_url: str | None = None, timeout: float = 10.0) -> Answer:
    """One request to ``<api>/<path>`` with the configured basic-auth string (if any)."""
    url = f"{(api_url or settings.resolved_prefect_api_url).rstrip('/')}/{path.lstrip('/')}"
    request = urllib.request.Request(url, method=method, data=None if body is None else json.dumps(body).encode())
    request.add_header("Content-Type", "application/json")
    if settings.prefect_auth_string:
        token = base64.b64encode(settings.prefect_auth_string.get_secret_value().encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - the configured API
            return Answer(response.status, _parse(response.read()))
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, _parse(exc.read()))
    except (urllib.error.URLError, ConnectionError, socket.timeout, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, (socket.timeout, TimeoutError)):
            reason = f"no answer within {timeout:g} s"
        raise TransientIOError(f"the Prefect API at {url} is unreachable ({reason})") from exc


def _parse(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return data.decode(errors="replace")
