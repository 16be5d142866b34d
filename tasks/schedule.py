"""Stage: find the scheduled retrains that are due (every spec's own cron) and start each one once."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.deployments import run_deployment

from leanops import retirement, schedule
from leanops.schedule import DueRetrain, SchedulePlan
from leanops.settings import get_settings
from tasks._policies import RETRY_IO


@task(cache_policy=NO_CACHE, **RETRY_IO)
def plan_due_retrains(lookback_minutes: float) -> SchedulePlan:
    """Read every spec, keep the models whose cron came due within the lookback, leave retired models out.
    Only due models are looked up in the registry: a pass over a hundred quiet models costs no MLflow call."""
    folder = schedule.read_spec_folder(get_settings().specs_dir)
    due = schedule.due_retrains(folder.specs, datetime.now(timezone.utc), timedelta(minutes=lookback_minutes))
    retired = {d.model for d in due if retirement.is_retired(d.model)}
    result = schedule.plan(due, retired, folder.errors)
    get_run_logger().info("%d spec(s) read: %s", len(folder.specs), result.summary())
    return result


# Retrying is safe: the same idempotency key returns the run already created instead of a second one.
@task(cache_policy=NO_CACHE, **RETRY_IO)
def start_retrain(due: DueRetrain, deployment: str) -> str:
    """Start the model's retrain for this due time, once: a later scheduler pass that sees the same due
    time gets the existing run back (Prefect's idempotency key per deployment)."""
    run = run_deployment(
        deployment,
        parameters={"spec": due.spec_ref, "reason": "schedule"},
        idempotency_key=due.idempotency_key,
        flow_run_name=f"{due.model}-{due.due_at.strftime('%Y%m%d-%H%M')}",
        timeout=0,
        as_subflow=False,
    )
    get_run_logger().info("%s due %s: flow run %s (key %s)", due.model, due.due_at.isoformat(), run.id, due.idempotency_key)
    return str(run.id)
