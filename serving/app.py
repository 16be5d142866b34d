"""The FastAPI app: ``POST /models/{name}/predict``, ``GET /health``, ``GET /ready``, ``GET /metrics``.

``create_app`` takes the two extension points of ``leanops.serving.extensions`` (a ``Router`` for
canary / shadow, a ``PredictionSink`` for the prediction log); ``app_factory`` is what uvicorn runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

from leanops.schedule import read_spec_folder
from leanops.serving.extensions import PredictionSink, Router
from leanops.serving.metrics import CONTENT_TYPE_LATEST, exposition
from leanops.serving.service import PredictionService
from leanops.settings import Settings, get_settings

log = logging.getLogger("leanops.serving")


def _json(status: int, body) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def load_specs(settings: Settings):
    folder = read_spec_folder(settings.specs_dir)
    for ref, error in folder.errors.items():
        log.error("spec %s cannot be read, its model is not served: %s", ref, error)
    return {spec.name: spec for spec in folder.specs.values()}


def default_router(specs, settings: Settings) -> Router:
    """Canary and shadow as each spec's ``serving`` section says (the champion alone where it gives no share)."""
    from leanops.serving.canary_router import CanaryRouter
    from leanops.serving.metrics import process_metrics

    return CanaryRouter(specs, process_metrics().registry, settings)


def default_sink(specs, settings: Settings) -> PredictionSink | None:
    """The prediction log, for the specs that keep one (``serving.log_sample_share`` / ``low_confidence_below``)."""
    from leanops.serving.log_sink import PredictionLogSink, logs_predictions

    return PredictionLogSink(specs, settings) if any(logs_predictions(s) for s in specs.values()) else None


def create_app(
    settings: Settings | None = None, router: Router | None = None, sink: PredictionSink | None = None,
    follow_events: bool | None = None,
) -> FastAPI:
    settings = settings or get_settings()
    specs = load_specs(settings)
    service = PredictionService(specs, settings, router=router or default_router(specs, settings), sink=sink or default_sink(specs, settings))
    follow = settings.serving_follow_events if follow_events is None else follow_events

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        service.start()
        listener = None
        if follow:
            from serving.events import follow_alias_moves

            listener = asyncio.get_running_loop().create_task(follow_alias_moves(service.follower.request))
        try:
            yield
        finally:
            if listener is not None:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener
            service.stop()

    app = FastAPI(title="leanops serving", lifespan=lifespan)
    app.state.service = service

    @app.post("/models/{name}/predict")
    async def predict(name: str, request: Request) -> Response:
        """One row (a JSON object of column: value) or a batch (a JSON array of them); the answer holds
        one prediction per row, each with an ``id`` to join labels on later."""
        answer = await service.predict(name, await request.body())
        return _json(answer.status, answer.body)

    @app.get("/health")
    async def health() -> Response:
        return _json(200, {"status": "ok"})

    @app.get("/ready")
    async def ready() -> Response:
        is_ready, reasons = service.follower.ready()
        versions = {f"{name}@{alias}": version for (name, alias), version in service.cache.versions().items()}
        return _json(200 if is_ready else 503, {"ready": is_ready, "serving": versions, "waiting_for": reasons})

    @app.get("/models")
    async def models() -> Response:
        return _json(200, {
            name: {alias: served.version for alias, served in service.loaded(name).items()} for name in sorted(service.specs)
        })

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(exposition(service.metrics), media_type=CONTENT_TYPE_LATEST)

    return app


def app_factory() -> FastAPI:
    """What ``uvicorn --factory serving.app:app_factory`` (and ``leanops serve``) runs in each worker."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per Prefect / MLflow call otherwise
    return create_app()

