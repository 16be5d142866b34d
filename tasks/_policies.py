"""Retry and cache policies shared by every lifecycle task.

Retries are for transient I/O only: a contract violation or a missing model is never retried.
Cache keys come from fingerprints (data content hashes, spec hashes) plus the task's source,
never from hashing a DataFrame or a client, so a cache hit costs milliseconds and crosses runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from prefect.cache_policies import TASK_SOURCE, CachePolicy
from prefect.context import TaskRunContext
from prefect.tasks import exponential_backoff
from prefect.utilities.hashing import hash_objects
from pydantic import BaseModel

from leanops.errors import NEVER_RETRY
from leanops.spec import Spec

IO_RETRIES = 3
IO_RETRY_DELAYS = exponential_backoff(backoff_factor=1)  # 1, 2, 4 s
IO_RETRY_JITTER = 0.5


def retry_transient_only(task, task_run, state) -> bool:
    """Retry unless the failure is one of ours that retrying cannot fix (contract violation, no model ...)."""
    try:
        state.result()
    except NEVER_RETRY:
        return False
    except Exception:  # noqa: BLE001 - everything else may be transient I/O
        return True
    return True


# Task options of every stage that talks to S3, MLflow or the Prefect API: `@task(**RETRY_IO, ...)`.
RETRY_IO: dict[str, Any] = dict(
    retries=IO_RETRIES,
    retry_delay_seconds=IO_RETRY_DELAYS,
    retry_jitter_factor=IO_RETRY_JITTER,
    retry_condition_fn=retry_transient_only,
)


def identity(value: Any) -> Any:
    """What a value contributes to a cache key: its fingerprint when it has one."""
    if isinstance(value, Spec):
        return f"spec:{value.spec_hash}"
    fingerprint = getattr(value, "fingerprint", None)
    if isinstance(fingerprint, str):
        return f"{type(value).__name__}:{fingerprint}"
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {k: identity(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [identity(v) for v in value]
    return value


@dataclass
class Fingerprints(CachePolicy):
    """Key from every input, each counted by its fingerprint (see :func:`identity`)."""

    def compute_key(
        self, task_ctx: TaskRunContext, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs: Any
    ) -> Optional[str]:
        if not inputs:
            return None
        return hash_objects({k: identity(v) for k, v in sorted(inputs.items())}, raise_on_failure=True)


BY_FINGERPRINT = Fingerprints() + TASK_SOURCE
