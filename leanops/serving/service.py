"""One prediction request end to end, apart from HTTP: look the model up, check the rows, route, score,
answer with an id per prediction, count it, and hand it to the prediction log off the request path.

The answer names the version that scored it; each prediction carries an ``id`` (a UUID) that a labels
batch arriving later joins on (column ``prediction_id``), as the prediction log keeps the same id.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter as Tally
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from leanops.serving.extensions import (
    ChampionOnly,
    DiscardingSink,
    PredictionRecord,
    PredictionSink,
    Router,
    SinkDispatcher,
)
from leanops.serving.metrics import ServingMetrics, process_metrics
from leanops.serving.models import CHAMPION, ModelCache, ServedModel, describe_outputs
from leanops.serving.reloading import AliasFollower
from leanops.serving.requests import InvalidRequest, RowChecker, parse_rows
from leanops.settings import Settings
from leanops.spec import Spec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]


class PredictionService:
    def __init__(
        self,
        specs: Mapping[str, Spec],
        settings: Settings,
        router: Router | None = None,
        sink: PredictionSink | None = None,
        metrics: ServingMetrics | None = None,
    ):
        self.specs = dict(specs)
        self.settings = settings
        self.router = router or ChampionOnly()
        self.metrics = metrics or process_metrics()
        self.cache = ModelCache()
        # One scoring thread: the GIL leaves little to gain from more, and batches keep it busy under load.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="predict")
        self.follower = AliasFollower(self.specs, self.cache, self.metrics, settings, self.aliases, self._executor)
        self.sink = SinkDispatcher(sink or DiscardingSink(), on_drop=lambda n: self.metrics.log_dropped.inc(n))
        self._checkers = {name: RowChecker.for_spec(spec) for name, spec in self.specs.items()}
        self._background: set[asyncio.Task] = set()

    def aliases(self, spec: Spec) -> tuple[str, ...]:
        return tuple(dict.fromkeys((CHAMPION, *self.router.aliases(spec))))

    def start(self) -> None:
        self.follower.start()

    def stop(self) -> None:
        self.follower.stop()
        self.sink.close()
        closing = getattr(self.router, "close", None)
        if closing is not None:
            try:
                closing()
            except Exception:  # noqa: BLE001 - stopping anyway: the live summary is written again by the next process
                log.exception("the router could not write its last live summary")
        self._executor.shutdown(wait=False, cancel_futures=True)

    def loaded(self, name: str) -> dict[str, ServedModel]:
        spec = self.specs[name]
        return {alias: served for alias in self.aliases(spec) if (served := self.cache.get(name, alias)) is not None}

    def _refuse(self, name: str, status: int, reason: str, detail: Any) -> Answer:
        self.metrics.requests.labels(name, "", str(status)).inc()
        self.metrics.errors.labels(name, reason).inc()
        return Answer(status, {"detail": detail})

    async def predict(self, name: str, body: bytes) -> Answer:
        started = time.perf_counter()
        received_at = time.time()
        spec = self.specs.get(name)
        if spec is None:
            # An unknown name is not a label value: it would let any caller mint new series.
            return self._refuse("", 404, "unknown_model", f"no model {name!r} is served (served: {', '.join(sorted(self.specs))})")
        try:
            rows, _ = parse_rows(body, self._checkers[name], self.settings.serving_max_rows_per_request)
        except InvalidRequest as exc:
            return self._refuse(name, 422, "invalid_input", [p.as_detail() for p in exc.problems])
        loaded = self.loaded(name)
        if CHAMPION not in loaded:
            state = self.follower.state(name)
            why = state.error if state and state.error else "no champion loaded (none registered yet, or still loading)"
            return self._refuse(name, 503, "not_loaded", f"model {name!r} cannot answer: {why}")
        request_id = uuid.uuid4().hex
        route = self.router.route(spec, loaded, key=request_id)
        served = loaded.get(route.answer, loaded[CHAMPION])
        try:
            output = await served.predict(rows)
            described = describe_outputs(output, spec)
        except Exception as exc:  # noqa: BLE001 - the caller gets a 500 naming the failure; the endpoint keeps serving
            log.exception("%s failed to predict %d rows", served.label, len(rows))
            self.metrics.requests.labels(name, served.version, "500").inc()
            self.metrics.errors.labels(name, "prediction_failed").inc()
            return Answer(500, {"detail": f"{served.label} failed to predict: {type(exc).__name__}: {exc}"[:1000]})
        predictions = [{"id": str(uuid.uuid4()), **d} for d in described]
        self._count(served, "answer", described)
        self.metrics.requests.labels(name, served.version, "200").inc()
        self.metrics.latency.labels(name, served.version).observe(time.perf_counter() - started)
        self._log(served, request_id, received_at, rows, predictions, shadow=False)
        for alias in route.shadow:
            other = loaded.get(alias)
            if other is not None and other is not served:
                self._spawn(self._shadow(other, request_id, received_at, rows))
        return Answer(200, {"model": name, "version": served.version, "alias": served.alias, "request_id": request_id, "predictions": predictions})

    def _count(self, served: ServedModel, role: str, described: list[dict[str, Any]]) -> None:
        m = self.metrics
        for label, n in Tally(str(d["label"]) if d["label"] is not None else "" for d in described).items():
            m.predictions.labels(served.name, served.version, served.alias, role, label).inc(n)
        scores = m.scores.labels(served.name, served.version, served.alias, role)
        for d in described:
            scores.observe(d["score"])

    def _log(self, served: ServedModel, request_id: str, received_at: float, rows, predictions, shadow: bool) -> None:
        if isinstance(self.sink.sink, DiscardingSink):
            return
        self.sink.submit([
            PredictionRecord(p["id"], request_id, served.name, served.version, served.alias, received_at, row, p["output"], p["score"], p["label"], shadow)
            for row, p in zip(rows, predictions)
        ])

    async def _shadow(self, served: ServedModel, request_id: str, received_at: float, rows) -> None:
        try:
            described = describe_outputs(await served.predict(rows), served.spec)
        except Exception:  # noqa: BLE001 - a failing shadow never touches the caller's answer; it is logged and counted
            log.exception("shadow %s failed", served.label)
            self.metrics.errors.labels(served.name, "shadow_failed").inc()
            return
        self._count(served, "shadow", described)
        self._log(served, request_id, received_at, rows, [{"id": str(uuid.uuid4()), **d} for d in described], shadow=True)

    def _spawn(self, coroutine) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
