"""The endpoint's Prometheus metrics (prometheus-client), named ``leanops_serving_*``.

With several worker processes (``serving_workers`` > 1) every process writes its values to files in
``PROMETHEUS_MULTIPROC_DIR`` (set by the launcher before any worker starts) and ``/metrics`` adds them
up, so a scrape counts the requests of all workers whichever one answers it.

Names and labels (the Grafana dashboard in infra/grafana/dashboards/ reads exactly these):
- ``leanops_serving_requests_total{model, version, status}``: every prediction request, by HTTP status;
  ``version`` is the one that answered ("" when none did: refused or failed before scoring)
- ``leanops_serving_errors_total{model, reason}``: invalid_input, unknown_model, not_loaded, prediction_failed
- ``leanops_serving_request_duration_seconds{model, version}``: answered requests, body read to answer built
- ``leanops_serving_predictions_total{model, version, alias, role, label}``: scored rows by predicted
  class (role ``answer``, or ``shadow`` for background scoring)
- ``leanops_serving_prediction_score{model, version, alias, role}``: positive-class probability
  (binary), top-class probability (multiclass) or predicted value (regression)
- ``leanops_serving_model_version{model, alias, version}``: 1 for the version each alias serves now
- ``leanops_serving_reloads_total{model, alias, trigger, outcome}``: alias checks that loaded a version
- ``leanops_serving_log_dropped_total``: predictions the log's full queue dropped
"""

from __future__ import annotations

import os
from functools import lru_cache

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST  # noqa: F401 - re-exported for the web front end

LATENCY_BUCKETS = (0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
SCORE_BUCKETS = tuple(round(0.05 * i, 2) for i in range(1, 21))


class ServingMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("leanops_serving_requests", "Prediction requests by answer status", ["model", "version", "status"], registry=r)
        self.errors = Counter("leanops_serving_errors", "Prediction requests not answered with a prediction, by reason", ["model", "reason"], registry=r)
        self.latency = Histogram(
            "leanops_serving_request_duration_seconds", "Time to answer a prediction request", ["model", "version"],
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.predictions = Counter(
            "leanops_serving_predictions", "Scored rows by predicted class", ["model", "version", "alias", "role", "label"], registry=r,
        )
        self.scores = Histogram(
            "leanops_serving_prediction_score", "Distribution of the predicted score", ["model", "version", "alias", "role"],
            buckets=SCORE_BUCKETS, registry=r,
        )
        self.model_version = Gauge(
            "leanops_serving_model_version", "1 for the version an alias serves now", ["model", "alias", "version"],
            registry=r, multiprocess_mode="max",
        )
        self.reloads = Counter("leanops_serving_reloads", "Versions loaded for an alias", ["model", "alias", "trigger", "outcome"], registry=r)
        # "fast" (leanops.serving.row_scoring) or "pyfunc": a version whose rows go to pyfunc answers ~10x slower.
        self.scored_rows = Counter("leanops_serving_scored_rows", "Rows scored, by scoring path", ["model", "version", "path"], registry=r)
        self.log_dropped = Counter("leanops_serving_log_dropped", "Predictions dropped by the log's full queue", registry=r)

    def served(self, name: str, alias: str, version: str, previous: str | None) -> None:
        if previous is not None and previous != version:
            self.model_version.labels(name, alias, previous).set(0)
        self.model_version.labels(name, alias, version).set(1)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def exposition(metrics: ServingMetrics) -> bytes:
    """The text a scrape of ``/metrics`` gets: this process's metrics, or every worker's added up."""
    if multiprocess_dir():
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(metrics.registry)


@lru_cache(maxsize=1)
def process_metrics() -> ServingMetrics:
    """The metrics of this process (a metric name can be registered once per registry)."""
    return ServingMetrics()
