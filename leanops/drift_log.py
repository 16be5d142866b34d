"""The drift monitor's record in MLflow: one run per drift check (experiment ``leanops/<model>/monitoring``)
holding the Evidently report and the check's scores, found again by its batch."""

from __future__ import annotations

from typing import Any

from leanops import tracking
from leanops.settings import Settings

REPORT_HTML_ARTIFACT = "drift/report.html"
REPORT_JSON_ARTIFACT = "drift/report.json"


def _monitoring_experiment(model: str) -> str:
    return f"leanops/{model}/monitoring"


def log_drift_check(
    model: str, version: str, batch_uri: str, result: Any, report_html: str, report_json: str, settings: Settings | None = None
) -> tuple[str, str]:
    """One run per drift check holding the Evidently report; returns (run id, URL of the report artifact
    in the MLflow UI)."""
    run = tracking.start_run(
        _monitoring_experiment(model),
        f"drift-{batch_uri.rsplit('/', 1)[-1]}",
        {"leanops.model": model, "leanops.champion_version": str(version), "leanops.batch_uri": batch_uri,
         "leanops.drift_status": result.status},
        settings=settings,
    )
    try:
        metrics = {"drift_share": float(result.drift_share), "n_current": float(result.n_current)}
        metrics.update({f"drift_{f.name}": float(f.score) for f in result.features if f.score == f.score})
        if result.prediction_drift_score is not None:
            metrics["prediction_drift_score"] = float(result.prediction_drift_score)
        if result.performance is not None:
            metrics[f"batch_{result.performance.metric}"] = float(result.performance.value)
        tracking.log_metrics(run.run_id, [(k, v, 0) for k, v in metrics.items()], settings=settings)
        tracking.log_text(run.run_id, report_html, REPORT_HTML_ARTIFACT, settings=settings)
        tracking.log_text(run.run_id, report_json, REPORT_JSON_ARTIFACT, settings=settings)
        tracking.end_run(run.run_id, settings=settings)
    except Exception:
        tracking.end_run(run.run_id, failed=True, settings=settings)
        raise
    return run.run_id, (f"{run.url}/artifacts/{REPORT_HTML_ARTIFACT}" if run.url.startswith("http") else run.url)


def drift_check_metrics(model: str, batch_uri: str, settings: Settings | None = None) -> dict[str, float]:
    """Metrics of the latest monitoring run for a batch (drift share, per-feature scores, batch metric)."""
    runs = tracking.find_runs(
        _monitoring_experiment(model), f"tags.`leanops.batch_uri` = '{batch_uri}'",
        ["attributes.start_time DESC"], max_results=1, settings=settings,
    )
    return runs[0].metrics if runs else {}
