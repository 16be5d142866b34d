"""The drift monitor's record in MLflow: one run per drift check (experiment ``leanops/<model>/monitoring``)
holding the Evidently report and the check's scores, found again by its batch."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, NamedTuple

from leanops import tracking
from leanops.settings import Settings, get_settings

REPORT_HTML_ARTIFACT = "drift/report.html"
REPORT_JSON_ARTIFACT = "drift/report.json"
REPORT_ERROR_TAG = "leanops.report_error"


def _monitoring_experiment(model: str) -> str:
    return f"leanops/{model}/monitoring"


_EVERY_MONITORING_EXPERIMENT = "leanops/%/monitoring"
# A check's run stays RUNNING from its verdict until its report is attached (seconds to minutes); one
# still RUNNING after this long belongs to a process that died, and is pruned like any other.
_IN_FLIGHT_HOURS = 24


class DriftCheckRun(NamedTuple):
    run_id: str
    report_url: str
    """Where the report's HTML will be, in the MLflow UI (known before it is built)."""
    report_json_uri: str
    """``runs:/<run id>/drift/report.json``"""


def open_drift_check(
    model: str, version: str, batch_uri: str, result: Any, settings: Settings | None = None
) -> DriftCheckRun:
    """The check's run, with its verdict's scores, opened before the report exists: the verdict's events and
    alerts link to the report's address at once, and :func:`attach_report` fills it. The run stays RUNNING
    until then."""
    run = tracking.start_run(
        _monitoring_experiment(model),
        f"drift-{batch_uri.rsplit('/', 1)[-1]}",
        {"leanops.model": model, "leanops.champion_version": str(version), "leanops.batch_uri": batch_uri,
         "leanops.drift_status": result.status},
        settings=settings,
    )
    metrics = {"drift_share": float(result.drift_share), "n_current": float(result.n_current)}
    metrics.update({f"drift_{f.name}": float(f.score) for f in result.features if f.score == f.score})
    if result.prediction_drift_score is not None:
        metrics["prediction_drift_score"] = float(result.prediction_drift_score)
    if result.performance is not None:
        metrics[f"batch_{result.performance.metric}"] = float(result.performance.value)
    params = {"check_reference_rows": result.n_reference_sampled, "check_current_rows": result.n_current_sampled}
    tracking.log_metrics(run.run_id, [(k, v, 0) for k, v in metrics.items()], settings=settings)
    tracking.log_params(run.run_id, params, settings=settings)
    report_url = f"{run.url}/artifacts/{REPORT_HTML_ARTIFACT}" if run.url.startswith("http") else run.url
    return DriftCheckRun(run.run_id, report_url, f"runs:/{run.run_id}/{REPORT_JSON_ARTIFACT}")


def run_id_of(report_json_uri: str) -> str:
    """The run id of ``runs:/<run id>/drift/report.json``."""
    prefix = "runs:/"
    if not report_json_uri.startswith(prefix):
        raise ValueError(f"not a drift report location: {report_json_uri!r} (expected runs:/<run id>/{REPORT_JSON_ARTIFACT})")
    return report_json_uri[len(prefix):].split("/", 1)[0]


def attach_report(run_id: str, report_html: str, report_json: str, reference_rows: int, current_rows: int,
                  settings: Settings | None = None) -> None:
    """The Evidently report into the check's run, which then finishes. The rows a side it was drawn from
    are tags (``leanops.report_reference_rows`` / ``_current_rows``): a rerun may attach it again from
    another sample size, which MLflow's immutable params would refuse."""
    rows = {"leanops.report_reference_rows": str(reference_rows), "leanops.report_current_rows": str(current_rows)}
    tracking.log_metrics(run_id, [], tags=rows, settings=settings)
    tracking.log_text(run_id, report_html, REPORT_HTML_ARTIFACT, settings=settings)
    tracking.log_text(run_id, report_json, REPORT_JSON_ARTIFACT, settings=settings)
    tracking.end_run(run_id, settings=settings)


def mark_report_failed(run_id: str, reason: str, settings: Settings | None = None) -> None:
    """The check's run ends FAILED with why its report is missing (tag ``leanops.report_error``); its
    verdict's scores stay."""
    tracking.set_run_tag(run_id, REPORT_ERROR_TAG, reason[:5000], settings=settings)
    tracking.end_run(run_id, failed=True, settings=settings)


def drift_check_metrics(model: str, batch_uri: str, settings: Settings | None = None) -> dict[str, float]:
    """Metrics of the latest monitoring run for a batch (drift share, per-feature scores, batch metric)."""
    runs = tracking.find_runs(
        _monitoring_experiment(model), f"tags.`leanops.batch_uri` = '{batch_uri}'",
        ["attributes.start_time DESC"], max_results=1, settings=settings,
    )
    return runs[0].metrics if runs else {}


@dataclass(frozen=True)
class PrunedReports:
    cutoff: str
    """ISO time: checks started before it were deleted."""
    deleted: tuple[str, ...]
    """``<experiment>/<run id>`` of each check deleted (or that would be, on a dry run)."""
    kept_in_flight: int
    """Old checks still RUNNING within the last day: their report may still be coming."""
    dry_run: bool


def prune_reports(older_than_days: float | None = None, dry_run: bool = False, now: datetime | None = None,
                  settings: Settings | None = None) -> PrunedReports:
    """Delete every model's drift-check runs (reports and scores) started before the retention window
    (``drift_report_retention_days``). The drift decisions do not read them: persistence and cooldowns
    have their own records. MLflow keeps a deleted run's rows until ``mlflow gc``."""
    settings = settings or get_settings()
    days = settings.drift_report_retention_days if older_than_days is None else older_than_days
    now = now or datetime.now(timezone.utc)
    cutoff = now - timedelta(days=days)
    in_flight_since = int((now - timedelta(hours=_IN_FLIGHT_HOURS)).timestamp() * 1000)
    old = tracking.runs_started_before(_EVERY_MONITORING_EXPERIMENT, int(cutoff.timestamp() * 1000), settings)
    in_flight: list[tracking.DatedRun] = []
    doomed: list[tracking.DatedRun] = []
    for run in old:
        (in_flight if run.status == "RUNNING" and run.start_time_ms >= in_flight_since else doomed).append(run)
    if not dry_run:
        for run in doomed:
            tracking.delete_run(run.run_id, settings)
    return PrunedReports(cutoff.isoformat(), tuple(f"{r.experiment}/{r.run_id}" for r in doomed), len(in_flight), dry_run)
