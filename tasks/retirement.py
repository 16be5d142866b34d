"""Stage: a retired model's automated runs log and step aside (leanops.retirement holds the state)."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from leanops import retirement
from leanops.results import MonitorOutcome
from leanops.spec import Spec
from tasks._policies import RETRY_IO


@task(cache_policy=NO_CACHE, **RETRY_IO)
def is_model_retired(spec: Spec) -> bool:
    """True when the model is retired; MLflow unreachable is an error to retry, never "active"."""
    record = retirement.retirement(spec.name)
    if record is not None:
        get_run_logger().info(
            "%s is retired (%s, by %s at %s): skipped", spec.name, record.reason or "no reason given", record.retired_by,
            record.retired_at,
        )
    return record is not None


@task(cache_policy=NO_CACHE, retries=0)
def note_retired(spec: Spec, batch_uri: str) -> MonitorOutcome:
    get_run_logger().info("%s was not checked for drift: %s is retired", batch_uri, spec.name)
    return MonitorOutcome(model=spec.name, batch_uri=batch_uri, status="retired")
