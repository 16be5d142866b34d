"""drift-monitor: compare a new batch with the champion's training reference; emit the verdict's events and
alerts, then attach its Evidently report."""

from __future__ import annotations

from prefect import flow

from leanops import alerts, events
from leanops.results import MonitorOutcome
from tasks.alert import alert_on_failure, send_alert
from tasks.evaluate import find_champion
from tasks.ingest import load_batch
from tasks.manifest import mark_processed, mark_rejected_batch
from tasks.monitor import (
    attach_drift_report,
    compute_drift,
    join_logged_predictions,
    load_champion_data,
    note_no_champion,
    record_drift_check,
    resolve_target,
)
from tasks.publish import publish_event
from tasks.retirement import is_model_retired, note_retired
from tasks.spec import load_model_spec
from tasks.validate import validate_batch


@flow(name="drift-monitor", log_prints=True, on_failure=[alert_on_failure, mark_rejected_batch])
def drift_monitor(spec: str = "", batch_uri: str = "", bucket: str = "", key: str = "", version_id: str = "") -> MonitorOutcome:
    """Check one batch (``batch_uri``, or ``bucket`` + ``key`` [+ ``version_id``] from an S3 event) for drift.

    ``spec`` defaults to the model named by the key: ``<incoming prefix><model>/<file>``.
    """
    target = resolve_target(spec, batch_uri, bucket, key, version_id)
    model_spec = load_model_spec(target.spec)
    if is_model_retired(model_spec):
        outcome = note_retired(model_spec, target.batch_uri)
        mark_processed(outcome)
        return outcome
    champion = find_champion(model_spec)
    if champion is None:
        outcome = note_no_champion(model_spec, target.batch_uri)
        mark_processed(outcome)
        return outcome
    batch = join_logged_predictions(load_batch(target.batch_uri, model_spec), model_spec)
    validate_batch(batch, model_spec)
    champion_data = load_champion_data(champion, model_spec)
    result = compute_drift(batch, champion_data)
    persistence = record_drift_check(result, batch, champion, model_spec)
    report = result.report_html_uri or ""
    publish_event(events.drift_checked(model_spec.name, champion.version, batch.uri, batch.fingerprint, result, report))
    detected = result.status == "drift" and persistence.persists
    if detected:
        held = f"{persistence.drift_checks} of the last {persistence.checks_considered} checks"
        publish_event(events.drift_detected(model_spec.name, champion.version, batch.uri, batch.fingerprint, result, report, held))
        send_alert(alerts.drift_alert(model_spec.name, champion.version, batch.uri, result, report, held))
    if result.performance_degraded:
        publish_event(events.model_degraded(model_spec.name, champion.version, batch.uri, batch.fingerprint, result.performance))
        send_alert(alerts.degraded_alert(model_spec.name, champion.version, batch.uri, result))
    outcome = MonitorOutcome(
        model_spec.name, batch.uri, result.status, champion.version, result, detected, result.performance_degraded
    )
    mark_processed(outcome)
    # Last, in this run: it reads the batch and champion already in memory, and the verdict above is out
    # whatever it costs; if it fails, the run fails and alerts, and the verdict stands.
    if result.report_json_uri:
        attach_drift_report(batch, champion_data, result)
    return outcome


if __name__ == "__main__":
    from flows._cli import run_from_command_line

    run_from_command_line(drift_monitor)
