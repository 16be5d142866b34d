"""Start the endpoint with uvicorn: N worker processes on one port (``serving_workers``)."""

from __future__ import annotations

import os
import tempfile

from leanops.settings import Settings, get_settings


def run(settings: Settings | None = None, host: str | None = None, port: int | None = None, workers: int | None = None) -> None:
    import uvicorn

    settings = settings or get_settings()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a log line per download otherwise
    workers = workers or settings.serving_workers
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Each worker writes its metrics here and /metrics adds them up (set before any worker imports
        # prometheus_client); a fresh folder per start, so a restart does not count old requests.
        base = settings.state_dir("serving")
        base.mkdir(parents=True, exist_ok=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="metrics-", dir=base)
    uvicorn.run(
        "serving.app:app_factory", factory=True, host=host or settings.host, port=port or settings.serving_port,
        workers=workers, log_level="warning", access_log=False, loop="uvloop", http="httptools",
        timeout_graceful_shutdown=5,
    )
