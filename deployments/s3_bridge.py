"""The S3 event bridge: SQS queue of bucket notifications -> Prefect events.

Prefect's open-source server has no inbound webhooks, so this small process long-polls the queue
the bucket notifies, turns each message into ``leanops.batch.landed`` events (leanops.bridge) and
posts them to ``POST /api/events``. Delivery is at least once, duplicates are harmless:

- a message is deleted only after Prefect accepted its events; if the bridge dies in between, the
  message reappears after the visibility timeout and is sent again;
- event ids are deterministic (uuid5 of bucket, key, version, sequencer), so the server keeps one
  event however often the same notification arrives;
- a message that is not a readable notification, or whose events Prefect refuses for good, goes to
  the dead-letter queue (with the reason as a message attribute) and the loop goes on;
- SQS or Prefect outages are retried with capped exponential backoff and jitter; while Prefect is
  down the bridge stops receiving (a receive counts toward the queue's redrive limit) and waits for
  ``/api/health`` to answer again.

Run: ``python -m deployments.s3_bridge`` (settings from ``LEANOPS_*``; SIGTERM/SIGINT stop it
after the message in hand). ``--fault kill-after-receive`` SIGKILLs the process after a message was
received and translated but before anything was posted: a test hook for the at-least-once promise.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from deployments.prefect_events import EventsRejected, PrefectEvents, auth_headers
from leanops import storage
from leanops.bridge import ObjectFilter, event_document, translate
from leanops.errors import MalformedNotification, TransientIOError
from leanops.settings import Settings, get_settings

log = logging.getLogger("leanops.s3_bridge")

KILL_AFTER_RECEIVE = "kill-after-receive"
FAULTS = (KILL_AFTER_RECEIVE,)


class _Interrupted(BaseException):
    """Raised by the signal handler to cut a long poll short (BaseException: no handler swallows it)."""


@dataclass
class Tally:
    received: int = 0
    emitted: int = 0
    ignored: int = 0
    dead_lettered: int = 0
    deferred: int = 0


class Bridge:
    def __init__(self, settings: Settings, events: PrefectEvents, heartbeat: Path | None = None, fault: str | None = None):
        if fault is not None and fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; known: {FAULTS}")
        self.settings = settings
        self.events = events
        self.heartbeat = heartbeat
        self.fault = fault
        self.filter = ObjectFilter.of(settings.s3_bucket_allow_list, settings.s3_incoming_prefix, settings.s3_incoming_suffix)
        self.scoring_filter = ObjectFilter.of(settings.s3_bucket_allow_list, settings.s3_scoring_prefix, settings.s3_scoring_suffixes)
        self.tally = Tally()
        self.stopping = threading.Event()
        self._polling = False
        self._prefect_down = False
        self.queue_url = ""
        self.dead_letter_url = ""

    # --- lifecycle --------------------------------------------------------------------------------

    def request_stop(self, signum: int, _frame: object) -> None:
        log.info("signal %s: stopping after the message in hand", signal.Signals(signum).name)
        self.stopping.set()
        if self._polling:
            raise _Interrupted

    def run(self, max_messages: int | None = None, once: bool = False) -> Tally:
        if not self._resolve_queues():
            return self.tally
        log.info(
            "relaying %s -> %s (filter: buckets=%s prefix=%r suffix=%r; to score: prefix=%r suffixes=%r)",
            self.settings.sqs_queue_name, self.events.url, sorted(self.filter.buckets) or "all",
            self.filter.prefix, self.filter.suffix, self.scoring_filter.prefix, self.scoring_filter.suffix,
        )
        try:
            while not self.stopping.is_set():
                if self._prefect_down:
                    self._wait_for_prefect()
                    continue
                wanted = 10 if max_messages is None else min(10, max_messages - self.tally.received)
                for message in self._receive(wanted):
                    self.tally.received += 1
                    self.handle(message)
                if once or (max_messages is not None and self.tally.received >= max_messages):
                    break
        except _Interrupted:
            pass  # a signal on the edge of a poll; nothing was in hand
        return self.tally

    def _resolve_queues(self) -> bool:
        attempt = 0
        while not self.stopping.is_set():
            try:
                self.queue_url = storage.queue_url(self.settings.sqs_queue_name, self.settings)
                self.dead_letter_url = storage.queue_url(self.settings.sqs_dead_letter_queue_name, self.settings)
                self._beat()  # healthy as soon as SQS answers, not after the first long poll
                return True
            except Exception as exc:  # noqa: BLE001 - the endpoint may still be starting: log and retry
                attempt += 1
                log.warning("queues %s / %s not reachable (%s); retrying", self.settings.sqs_queue_name,
                            self.settings.sqs_dead_letter_queue_name, exc)
                self.stopping.wait(self._backoff(attempt))
        return False

    def _wait_for_prefect(self) -> None:
        attempt = 0
        while not self.stopping.is_set():
            if self.events.healthy():
                log.info("Prefect answers again; receiving")
                self._prefect_down = False
                return
            attempt += 1
            self.stopping.wait(self._backoff(attempt))

    def _receive(self, wanted: int) -> list[storage.QueueMessage]:
        attempt = 0
        while not self.stopping.is_set():
            try:
                self._polling = True
                if self.stopping.is_set():  # a signal that came just before the flag was raised
                    return []
                messages = storage.receive_messages(
                    self.queue_url,
                    max_messages=wanted,
                    wait_seconds=self.settings.sqs_wait_seconds,
                    settings=self.settings,
                    visibility_timeout=self.settings.sqs_visibility_timeout_seconds,
                )
            except _Interrupted:
                return []  # anything received meanwhile reappears after the visibility timeout
            except Exception as exc:  # noqa: BLE001 - SQS outage: never crash the loop
                attempt += 1
                log.warning("receiving from %s failed (%s); retrying", self.queue_url, exc)
                self._polling = False
                self.stopping.wait(self._backoff(attempt))
                continue
            finally:
                self._polling = False
            self._beat()
            return messages
        return []

    # --- one message ------------------------------------------------------------------------------

    def handle(self, message: storage.QueueMessage) -> None:
        # After this the message is visible to other consumers again: stop retrying and let it go.
        deadline = time.monotonic() + 0.8 * self.settings.sqs_visibility_timeout_seconds
        try:
            events = translate(message.body, self.filter, self.scoring_filter)
        except MalformedNotification as exc:
            self._dead_letter(message, f"malformed notification: {exc}")
            return
        if self.fault == KILL_AFTER_RECEIVE:
            log.warning("fault injection: SIGKILL after receiving %s, before posting", message.message_id)
            os.kill(os.getpid(), signal.SIGKILL)
        if not events:
            self.tally.ignored += 1
            self._delete(message)
            return
        if self._prefect_down:  # an earlier message of this batch found Prefect down: don't wait again
            self.tally.deferred += 1
            return
        documents = [event_document(e) for e in events]
        attempt = 0
        while True:
            try:
                self.events.post(documents)
                break
            except EventsRejected as exc:
                self._dead_letter(message, str(exc))
                return
            except TransientIOError as exc:
                attempt += 1
                delay = self._backoff(attempt)
                if self.stopping.is_set() or time.monotonic() + delay > deadline:
                    log.warning("giving %s back to the queue for redelivery: %s", message.message_id, exc)
                    self.tally.deferred += 1
                    self._prefect_down = True
                    return
                log.warning("posting events failed (%s); retry %d in %.1f s", exc, attempt, delay)
                self.stopping.wait(delay)
        self._delete(message)
        self.tally.emitted += len(events)
        now = datetime.now(timezone.utc)
        for event, document in zip(events, documents):
            lag_ms = (now - datetime.fromisoformat(document["occurred"])).total_seconds() * 1000
            log.info("emitted %s %s (id %s, %.0f ms after the S3 event)", event.event, event.resource_id, event.event_id, lag_ms)

    def _delete(self, message: storage.QueueMessage) -> None:
        for attempt in range(1, 4):
            try:
                storage.delete_message(self.queue_url, message.receipt_handle, self.settings)
                return
            except Exception as exc:  # noqa: BLE001 - left undeleted it is redelivered; ids dedupe it
                log.warning("deleting %s failed (%s), attempt %d", message.message_id, exc, attempt)
                self.stopping.wait(self._backoff(attempt))

    def _dead_letter(self, message: storage.QueueMessage, reason: str) -> None:
        log.error("dead-lettering message %s: %s", message.message_id, reason)
        try:
            storage.send_message(
                self.dead_letter_url,
                message.body,
                self.settings,
                attributes={"reason": reason[:1000], "source_message_id": message.message_id},
            )
        except Exception as exc:  # noqa: BLE001 - keep it in the main queue; SQS's redrive policy takes over
            log.error("could not dead-letter %s (%s); it stays in the queue", message.message_id, exc)
            self.tally.deferred += 1
            return
        self.tally.dead_lettered += 1
        self._delete(message)

    # --- helpers ----------------------------------------------------------------------------------

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.settings.bridge_max_backoff_seconds, 0.5 * 2 ** (attempt - 1))
        return ceiling * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not crypto

    def _beat(self) -> None:
        if self.heartbeat is not None:
            self.heartbeat.parent.mkdir(parents=True, exist_ok=True)
            self.heartbeat.write_text(f"{time.time():.3f}\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deployments.s3_bridge", description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-messages", type=int, default=None, help="exit after handling this many messages")
    parser.add_argument("--once", action="store_true", help="one receive call, then exit")
    parser.add_argument("--heartbeat", type=Path, default=None, help="file touched after every receive (health check)")
    parser.add_argument("--fault", choices=FAULTS, default=None, help="fault injection for tests")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise; we log per event
    settings = get_settings()
    events = PrefectEvents(settings.resolved_prefect_api_url, auth_headers())
    bridge = Bridge(settings, events, heartbeat=args.heartbeat, fault=args.fault)
    signal.signal(signal.SIGTERM, bridge.request_stop)
    signal.signal(signal.SIGINT, bridge.request_stop)
    try:
        tally = bridge.run(max_messages=args.max_messages, once=args.once)
    finally:
        events.close()
    log.info("stopped: %s", tally)
    return 0


if __name__ == "__main__":
    sys.exit(main())
