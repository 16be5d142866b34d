"""The two seams of the endpoint, for canary / shadow serving and the prediction log.

``Router``: which loaded version answers a request, and which others score it in the background.
The default answers with the champion alone. A canary router keeps the challenger loaded too
(``aliases``) and answers a share of requests with it (``Route(answer="challenger")``); a shadow
router answers with the champion and names the challenger in ``Route.shadow``: the service scores
the request with it after answering, off the request path, and hands those predictions to the sink
marked ``shadow=True``. Both show up per version in the metrics.

``PredictionSink``: receives every prediction (answered and shadow), in batches, from a background
thread: ``write`` may block on S3 without slowing a request. A full queue drops the oldest batch and
counts it (``leanops_serving_log_dropped_total``) rather than holding requests back.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from leanops.serving.models import CHAMPION, ServedModel
from leanops.spec import Spec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Route:
    answer: str = CHAMPION  # the alias whose version answers the caller
    shadow: tuple[str, ...] = ()  # aliases that score the same rows in the background


class Router(Protocol):
    def aliases(self, spec: Spec) -> tuple[str, ...]:
        """The aliases to keep loaded for this model (the champion is always among them)."""

    def route(self, spec: Spec, loaded: Mapping[str, ServedModel], key: str | None = None) -> Route:
        """Choose for one request, among the aliases loaded right now (``loaded`` always holds the champion).
        ``key`` identifies the request (its ``request_id``): a hash of it makes the choice deterministic."""


class ChampionOnly:
    """The default: the champion answers every request; nothing is scored in the shadow."""

    def aliases(self, spec: Spec) -> tuple[str, ...]:
        return (CHAMPION,)

    def route(self, spec: Spec, loaded: Mapping[str, ServedModel], key: str | None = None) -> Route:
        return Route(CHAMPION)


@dataclass(frozen=True)
class PredictionRecord:
    """One scored row: what the prediction log keeps and what a later label joins on (``prediction_id``)."""

    prediction_id: str
    request_id: str
    model: str
    version: str
    alias: str
    received_at: float  # seconds since the epoch (UTC)
    row: dict[str, Any]
    output: Any
    score: float
    label: str | None
    shadow: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class PredictionSink(Protocol):
    def write(self, records: Sequence[PredictionRecord]) -> None:
        """Keep a batch of predictions. Called from a background thread; may block; an exception is logged."""


class DiscardingSink:
    """The default: predictions are answered and counted, not kept."""

    def write(self, records: Sequence[PredictionRecord]) -> None:
        return None


class SinkDispatcher:
    """Hands batches to a sink from one background thread, so a request never waits on the log."""

    def __init__(self, sink: PredictionSink, max_batches: int = 1000, on_drop: Callable[[int], None] | None = None):
        self.sink = sink
        self._queue: queue.Queue[Sequence[PredictionRecord] | None] = queue.Queue(maxsize=max_batches)
        self._on_drop = on_drop or (lambda n: None)
        self._thread = threading.Thread(target=self._run, name="prediction-sink", daemon=True)
        self._thread.start()

    def submit(self, records: Sequence[PredictionRecord]) -> None:
        if isinstance(self.sink, DiscardingSink) or not records:
            return
        while True:
            try:
                self._queue.put_nowait(records)
                return
            except queue.Full:
                try:
                    dropped = self._queue.get_nowait()
                    self._on_drop(len(dropped) if dropped else 0)
                except queue.Empty:
                    pass

    def _run(self) -> None:
        while True:
            records = self._queue.get()
            if records is None:
                return
            try:
                self.sink.write(records)
            except Exception:  # noqa: BLE001 - the log must never take the endpoint down; the sink reports its own failures
                log.exception("the prediction sink failed on %d records", len(records))

    def close(self, timeout: float = 10.0) -> None:
        """Let the queued batches reach the sink (up to ``timeout``), then stop; a sink with ``close`` writes its rest."""
        self._queue.put(None)
        self._thread.join(timeout)
        closing = getattr(self.sink, "close", None)
        if closing is not None:
            try:
                closing()
            except Exception:  # noqa: BLE001 - stopping anyway: what could not be written is reported, nothing else is lost
                log.exception("the prediction sink could not write its last records")
