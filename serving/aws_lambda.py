"""The online endpoint on AWS Lambda behind an HTTP API (API Gateway v2, or a Lambda Function URL: the
same event shape, payload format 2.0). The same FastAPI app as ``leanops serve``, adapted by Mangum.

Handler: ``serving.aws_lambda.handler`` (serving/lambda/Dockerfile). A container is warmed by its first
request: the app is built, each model's champion (and challenger, when its spec shares traffic) is
loaded from MLflow once, and every later request of that warm container reuses them. Lambda runs the
code outside a request only while the container is thawed: alias checks, the prediction log's flushes
and the live summaries happen between requests of a busy container, and a container reclaimed while
idle loses at most the log rows of its last flush interval (the log is a sample, not a ledger).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

log = logging.getLogger("leanops.serving.lambda")

# Cold start: a first request waits this long for the models to load, then is answered 503 while they go
# on loading (in the next requests' time: Lambda freezes a container between requests). Under the HTTP
# API's 30 s integration limit, so the caller gets our answer rather than the gateway's timeout.
READY_TIMEOUT_SECONDS = 25.0

_adapter: Any = None
_warming = threading.Lock()


def warm(ready_timeout: float = READY_TIMEOUT_SECONDS) -> Any:
    """Build the app and load its models, once per container; returns the Mangum adapter."""
    global _adapter
    with _warming:
        if _adapter is not None:
            return _adapter
        from mangum import Mangum

        from serving.app import create_app

        started = time.perf_counter()
        # No Prefect event stream into a function that sleeps between requests: the alias check follows moves.
        app = create_app(follow_events=False)
        service = app.state.service
        service.start()
        deadline = time.monotonic() + ready_timeout
        ready, waiting = service.follower.ready()
        while not ready and time.monotonic() < deadline:
            time.sleep(0.02)  # the follower's thread is loading; nothing to answer before it is done
            ready, waiting = service.follower.ready()
        log.info("cold start: app and models in %.2f s; ready=%s %s", time.perf_counter() - started, ready, waiting or "")
        # Lifespan "off": Mangum would run the app's startup and shutdown around every single request.
        _adapter = Mangum(app, lifespan="off")
        return _adapter


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return warm()(event, context)
