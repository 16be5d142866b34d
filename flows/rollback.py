"""rollback: move the champion back to previous-champion (or a given version), with an audit trail,
an event and a Slack message. Given the degrading batch, only if the previous champion scores better on it."""

from __future__ import annotations

from prefect import flow

from leanops import promotion_messages
from leanops.results import AliasChange
from tasks.alert import alert_on_failure, send_alert
from tasks.ingest import load_batch
from tasks.promote import apply_rollback, compare_on_batch, find_rollback_candidates, keep_champion
from tasks.publish import publish_event
from tasks.spec import load_model_spec
from tasks.validate import validate_batch


@flow(name="rollback", log_prints=True, on_failure=[alert_on_failure])
def rollback(spec: str, to_version: int | str | None = None, batch_uri: str | None = None, reason: str = "") -> AliasChange:
    """Roll the champion of ``spec`` back; with ``batch_uri``, only if the target scores better on that batch ("kept" otherwise)."""
    model_spec = load_model_spec(spec)
    # A degradation (batch given) with nothing to roll back to is an outcome to report, not a crash.
    current, target = find_rollback_candidates(model_spec, to_version, missing_ok=bool(batch_uri))
    if target is None:
        change = keep_champion(model_spec, current, reason)
        send_alert(promotion_messages.rollback_alert(change))
        return change
    check = None
    if batch_uri:
        batch = load_batch(batch_uri, model_spec)
        validate_batch(batch, model_spec)
        check = compare_on_batch(model_spec, current, target, batch)
    change = apply_rollback(model_spec, current, target, check, reason)
    event = promotion_messages.rollback_event(change, batch_uri)
    if event is not None:
        publish_event(event)
    alert = promotion_messages.rollback_alert(change)
    if alert is not None:
        send_alert(alert)
    return change


if __name__ == "__main__":
    from flows._cli import run_from_command_line

    run_from_command_line(rollback)
