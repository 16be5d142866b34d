"""Claim a retrain against the model's cooldown. The last-retrain time lives in a Prefect variable,
so it survives restarts of the server (it is a row in the server's database) and of workers."""

from __future__ import annotations

from datetime import datetime, timezone

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.variables import Variable

from leanops.cooldown import RetrainGate, decide_retrain
from leanops.spec import Spec


def _variable_name(spec: Spec) -> str:
    return f"leanops-last-retrain-{spec.name}".replace("_", "-")


def last_retrain_at(spec: Spec) -> datetime | None:
    """When the model's last retrain started (any reason), as recorded by :func:`claim_retrain`."""
    stored = Variable.get(_variable_name(spec), default=None)
    return datetime.fromisoformat(stored) if stored else None


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=1)
def claim_retrain(spec: Spec, reason: str) -> RetrainGate:
    gate = decide_retrain(reason, last_retrain_at(spec), spec.retrain_window.cooldown_minutes)
    if gate.allowed:
        Variable.set(_variable_name(spec), datetime.now(timezone.utc).isoformat(), overwrite=True)
    get_run_logger().info(gate.explanation)
    return gate
