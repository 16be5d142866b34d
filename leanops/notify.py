"""Slack alerts: formatting, deduplication and sending. The only slack_sdk user.

Deduplication, per (model, kind), with state in a JSON document (``settings.alert_state_uri``: a file
under ``settings.home``, or an object in the bucket shared by every worker; leanops/shared_state.py)
so it holds across processes, workers and restarts:

- the first alert posts a top-level message;
- the same (model, kind) again within ``settings.alert_cooldown_minutes`` of the last post sends
  nothing (``suppressed``; counted);
- after the cooldown it is posted as a reply in the first message's thread (``threaded``), saying
  how many were suppressed meanwhile, and the cooldown restarts;
- a thread untouched for ``thread_ttl`` (7 days), or one closed with :meth:`Notifier.resolve`, ends:
  the next alert starts a new top-level message.

No token configured: the alert is logged, not sent. During ``settings.alert_maintenance_window``
("HH:MM-HH:MM", UTC, may wrap midnight) alerts are logged and not sent. Slack's 429 (honouring
Retry-After), 5xx, connection errors and timeouts are retried by slack_sdk's retry handlers; then
:meth:`Notifier.send` returns a :class:`SendOutcome` and never raises. The token is never logged.
"""

from __future__ import annotations

import contextlib
import logging
import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from http.client import RemoteDisconnected
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Mapping, Sequence
from urllib.error import URLError

from leanops import shared_state
from leanops.errors import LeanopsError
from leanops.settings import Settings, get_settings

logger = logging.getLogger("leanops.notify")

AlertKind = Literal["drift", "degraded", "contract_violation", "run_failed", "promotion", "rejected", "rollback", "info"]
OutcomeStatus = Literal["sent", "threaded", "suppressed", "logged", "silenced", "failed"]

_EMOJI = {
    "drift": ":warning:",
    "degraded": ":chart_with_downwards_trend:",
    "contract_violation": ":no_entry:",
    "run_failed": ":x:",
    "promotion": ":rocket:",
    "rejected": ":no_entry_sign:",
    "rollback": ":rewind:",
    "info": ":information_source:",
}
# Slack Block Kit limits: header text 150 chars, 10 fields a section, 2,000 chars a field.
_HEADER_MAX, _FIELDS_MAX, _FIELD_MAX = 150, 10, 2000
_STATE_VERSION = 1


def _pairs(items: Mapping[str, Any] | Sequence[tuple[str, Any]]) -> tuple[tuple[str, str], ...]:
    pairs = items.items() if isinstance(items, Mapping) else items
    return tuple((str(k), str(v)) for k, v in pairs)


def _escape(text: str) -> str:
    # Slack mrkdwn treats these three as control characters.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class Alert:
    """One alert. ``fields`` (label -> value) and ``links`` (label -> URL or URI) keep their order."""

    model: str
    kind: str
    title: str
    fields: tuple[tuple[str, str], ...] = ()
    links: tuple[tuple[str, str], ...] = ()
    topic: str = ""
    """Narrows deduplication within a kind (e.g. the flow of a failed run): a failed promote must not
    be suppressed by the cooldown of a failed drift check of the same model."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", _pairs(self.fields))
        object.__setattr__(self, "links", _pairs(self.links))

    @property
    def dedup_key(self) -> str:
        return f"{self.model}:{self.kind}" + (f":{self.topic}" if self.topic else "")

    def text(self) -> str:
        """Plain-text fallback (notifications, logs)."""
        details = ", ".join(f"{k}: {v}" for k, v in self.fields)
        return f"[{self.kind}] {self.model}: {self.title}" + (f" ({details})" if details else "")

    def blocks(self, *, reply: bool = False, suppressed: int = 0, since: datetime | None = None) -> list[dict[str, Any]]:
        """Compact Block Kit: a header (or a bold line in a thread reply), fields, then links."""
        emoji = _EMOJI.get(self.kind, ":bell:")
        blocks: list[dict[str, Any]] = []
        if reply:
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _clip(f"{emoji} *Update:* {_escape(self.title)}", 3000)}})
        else:
            header = _clip(f"{emoji} {self.model}: {self.title}", _HEADER_MAX)
            blocks.append({"type": "header", "text": {"type": "plain_text", "text": header, "emoji": True}})
        if self.fields:
            fields = self.fields[:_FIELDS_MAX]
            blocks.append(
                {
                    "type": "section",
                    "fields": [{"type": "mrkdwn", "text": _clip(f"*{_escape(k)}*\n{_escape(v)}", _FIELD_MAX)} for k, v in fields],
                }
            )
        context = []
        if self.links:
            rendered = [
                f"<{url}|{_escape(label)}>" if url.startswith(("http://", "https://")) else f"{_escape(label)}: `{_escape(url)}`"
                for label, url in self.links
            ]
            context.append(" · ".join(rendered))
        if suppressed:
            when = f" since {since:%Y-%m-%d %H:%M} UTC" if since else ""
            context.append(f"{suppressed} similar alert{'s' if suppressed != 1 else ''} suppressed{when}")
        if not reply:
            context.append(f"model `{_escape(self.model)}` · {self.kind}")
        if context:
            blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _clip(t, 3000)} for t in context]})
        return blocks


@dataclass(frozen=True)
class SendOutcome:
    status: OutcomeStatus
    """sent (new message), threaded (reply), suppressed (cooldown), logged (no token),
    silenced (maintenance window), failed (Slack refused or unreachable after retries)."""
    detail: str = ""
    channel: str | None = None
    ts: str | None = None
    thread_ts: str | None = None

    @property
    def delivered(self) -> bool:
        return self.status in ("sent", "threaded")


def parse_window(text: str) -> tuple[time, time]:
    """``"HH:MM-HH:MM"`` (UTC) -> (start, end). The window may wrap midnight (``"22:00-02:00"``)."""
    match = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*", text)
    if not match:
        raise ValueError(f"alert_maintenance_window {text!r} is not 'HH:MM-HH:MM' (UTC)")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    try:
        return time(h1, m1), time(h2, m2)
    except ValueError as exc:
        raise ValueError(f"alert_maintenance_window {text!r}: {exc}") from exc


def in_window(moment: datetime, window: tuple[time, time]) -> bool:
    start, end = window
    now = moment.astimezone(timezone.utc).time()
    return start <= now < end if start <= end else (now >= start or now < end)


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Notifier:
    """Sends :class:`Alert` s to ``settings.slack_channel`` with deduplication (see the module doc).

    ``clock`` returns the current UTC time (tests pass their own). Construction fails on a malformed
    maintenance window (a configuration error); :meth:`send` never raises.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        state_path: Path | None = None,
        clock: Callable[[], datetime] = _utcnow,
        max_retries: int = 2,
        timeout_seconds: float = 10.0,
        thread_ttl: timedelta = timedelta(days=7),
    ):
        self.settings = settings or get_settings()
        # A local file (one machine) or s3://... (every worker): settings.alert_state_uri.
        self.state_uri = str(state_path) if state_path else self.settings.resolved_alert_state_uri
        self.clock = clock
        self.cooldown = timedelta(minutes=self.settings.alert_cooldown_minutes)
        self.thread_ttl = thread_ttl
        self.max_retries = max_retries
        self.timeout_seconds = timeout_seconds
        window = self.settings.alert_maintenance_window
        self.maintenance_window = parse_window(window) if window else None
        self._client = None

    # --- public --------------------------------------------------------------------------------

    def send(self, alert: Alert) -> SendOutcome:
        try:
            return self._send(alert)
        except Exception as exc:  # noqa: BLE001 - an alert must never break the flow that raises it
            logger.error("Slack alert %s failed unexpectedly: %s: %s", alert.dedup_key, type(exc).__name__, exc)
            return SendOutcome("failed", f"{type(exc).__name__}: {exc}")

    def check_token(self) -> tuple[bool, str]:
        """(whether Slack accepts the configured token, what Slack said): one ``auth.test`` call, no message posted."""
        from slack_sdk.errors import SlackApiError

        token = self.settings.slack_token.get_secret_value() if self.settings.slack_token else ""
        if not token:
            return False, "no Slack token configured (LEANOPS_SLACK_TOKEN): alerts are logged, not sent"
        try:
            answer = self._web_client(token).auth_test()
        except SlackApiError as exc:
            error = exc.response.get("error", "") if exc.response is not None and isinstance(exc.response.data, dict) else str(exc)
            return False, f"Slack refused the token: {error}"
        except Exception as exc:  # noqa: BLE001 - network errors of every kind after the retries: the answer
            return False, f"Slack unreachable: {type(exc).__name__}: {exc}"
        return True, f"Slack accepts the token (team {answer.get('team', '?')}, user {answer.get('user', '?')}); alerts go to {self.settings.slack_channel}"

    def resolve(self, model: str, kind: str) -> None:
        """Close the (model, kind) thread: the next such alert starts a new top-level message."""
        try:
            with self._locked_state() as state:
                state["threads"].pop(f"{model}:{kind}", None)
        except (OSError, LeanopsError) as exc:
            logger.error("cannot update Slack alert state %s: %s", self.state_uri, exc)

    # --- internals ---------------------------------------------------------------------------------

    def _send(self, alert: Alert) -> SendOutcome:
        token = self.settings.slack_token.get_secret_value() if self.settings.slack_token else ""
        if not token:
            logger.warning("Slack is not configured (LEANOPS_SLACK_TOKEN unset); alert logged, not sent: %s", alert.text())
            return SendOutcome("logged", "no Slack token configured")
        now = self.clock()
        if self.maintenance_window and in_window(now, self.maintenance_window):
            logger.warning("maintenance window %s UTC; alert logged, not sent: %s", self.settings.alert_maintenance_window, alert.text())
            return SendOutcome("silenced", f"maintenance window {self.settings.alert_maintenance_window} UTC")

        # The lock is held while posting, so two processes cannot both post the "first" message.
        with self._locked_state() as state:
            threads = state["threads"]
            entry = threads.get(alert.dedup_key)
            if entry is not None and now - _parse_time(entry["last_sent_at"]) > self.thread_ttl:
                entry = None
            if entry is not None and now - _parse_time(entry["last_sent_at"]) < self.cooldown:
                entry["suppressed"] = int(entry.get("suppressed", 0)) + 1
                entry.setdefault("suppressed_since", now.isoformat())
                return SendOutcome(
                    "suppressed",
                    f"same alert sent at {entry['last_sent_at']}; cooldown {self.settings.alert_cooldown_minutes:g} min",
                    channel=entry["channel"],
                    thread_ts=entry["ts"],
                )
            if entry is None:
                outcome = self._post(token, alert, thread_ts=None, blocks=alert.blocks())
                if outcome.delivered:
                    threads[alert.dedup_key] = {
                        "channel": outcome.channel,
                        "ts": outcome.ts,
                        "first_sent_at": now.isoformat(),
                        "last_sent_at": now.isoformat(),
                        "suppressed": 0,
                    }
                return outcome
            suppressed = int(entry.get("suppressed", 0))
            since = _parse_time(entry["suppressed_since"]) if entry.get("suppressed_since") else None
            blocks = alert.blocks(reply=True, suppressed=suppressed, since=since)
            outcome = self._post(token, alert, thread_ts=entry["ts"], blocks=blocks, channel=entry["channel"])
            if outcome.delivered:
                entry.update(last_sent_at=now.isoformat(), suppressed=0)
                entry.pop("suppressed_since", None)
            return outcome

    def _web_client(self, token: str):
        if self._client is None:
            from slack_sdk import WebClient
            from slack_sdk.http_retry.builtin_handlers import (
                ConnectionErrorRetryHandler,
                RateLimitErrorRetryHandler,
                ServerErrorRetryHandler,
            )

            class AnyServerErrorRetryHandler(ServerErrorRetryHandler):
                # The built-in one retries 500 and 503 only; 502 and 504 are just as transient.
                def _can_retry(self, *, state, request, response=None, error=None) -> bool:
                    return response is not None and 500 <= response.status_code < 600

            n = self.max_retries
            self._client = WebClient(
                token=token,
                base_url=self.settings.slack_base_url,
                timeout=self.timeout_seconds,
                retry_handlers=[
                    # A timed-out post may have reached Slack: a rare duplicate beats a lost alert.
                    ConnectionErrorRetryHandler(
                        max_retry_count=n, error_types=[URLError, ConnectionResetError, RemoteDisconnected, TimeoutError]
                    ),
                    RateLimitErrorRetryHandler(max_retry_count=n),
                    AnyServerErrorRetryHandler(max_retry_count=n),
                ],
            )
        return self._client

    def _post(self, token: str, alert: Alert, *, thread_ts: str | None, blocks: list[dict], channel: str | None = None) -> SendOutcome:
        from slack_sdk.errors import SlackApiError

        kind = "threaded" if thread_ts else "sent"
        try:
            response = self._web_client(token).chat_postMessage(
                channel=channel or self.settings.slack_channel,
                text=alert.text(),
                blocks=blocks,
                thread_ts=thread_ts,
                unfurl_links=False,
            )
        except SlackApiError as exc:
            status = exc.response.status_code if exc.response is not None else "?"
            error = exc.response.get("error", "") if exc.response is not None and isinstance(exc.response.data, dict) else ""
            logger.error("Slack refused alert %s (HTTP %s %s) after retries", alert.dedup_key, status, error)
            return SendOutcome("failed", f"Slack answered HTTP {status} {error}".strip())
        except Exception as exc:  # noqa: BLE001 - network errors of every kind after the retries
            logger.error("Slack unreachable for alert %s: %s: %s", alert.dedup_key, type(exc).__name__, exc)
            return SendOutcome("failed", f"{type(exc).__name__}: {exc}")
        return SendOutcome(kind, channel=response.get("channel"), ts=response.get("ts"), thread_ts=thread_ts)

    @contextlib.contextmanager
    def _locked_state(self) -> Iterator[dict[str, Any]]:
        """Exclusive access to the alert state across processes (and, in the object store, across
        workers); written back on exit if changed."""
        with shared_state.locked_json(
            self.state_uri, lambda: {"version": _STATE_VERSION, "threads": {}},
            lambda state: isinstance(state, dict) and isinstance(state.get("threads"), dict),
            settings=self.settings,
        ) as state:
            yield state


def _parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
