"""Slack alerts from flows: a task for explicit alerts and a hook for failed runs."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from leanops.alerts import failure_alert, model_of_run
from leanops.notify import Alert, Notifier, SendOutcome
from leanops.settings import get_settings


# No Prefect retries: the notifier retries Slack itself and never raises, so a flaky Slack never fails a flow.
@task(cache_policy=NO_CACHE, retries=0)
def send_alert(alert: Alert) -> SendOutcome:
    return Notifier().send(alert)


def alert_on_failure(flow, flow_run, state) -> None:
    """Flow hook: a failed run (a rejected batch included) tells the team in Slack."""
    from prefect.settings import PREFECT_UI_URL

    error = None
    try:
        state.result()
    except BaseException as exc:  # noqa: BLE001 - the failure being reported
        error = exc
    settings = get_settings()
    # A key names its model under the incoming prefix (drift checks) or the scoring prefix (batch scoring).
    named = [model_of_run(flow_run.parameters, prefix) for prefix in (settings.s3_incoming_prefix, settings.s3_scoring_prefix)]
    model = next((m for m in named if m != "leanops"), "leanops")
    ui = PREFECT_UI_URL.value() or ""
    run_url = f"{ui}/runs/flow-run/{flow_run.id}" if ui else str(flow_run.id)
    Notifier().send(failure_alert(model, flow.name, flow_run.name, run_url, error))
