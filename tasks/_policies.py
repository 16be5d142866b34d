"""Retry, cache and result policies shared by every lifecycle task.

Retries are for transient I/O only: a contract violation, a missing model or a programming error
(TypeError, KeyError ...) is never retried.
Cache keys come from fingerprints (data content hashes, spec hashes) plus the task's source,
never from hashing a DataFrame or a client, so a cache hit costs milliseconds and crosses runs.
A cached result is stored and read back as data, never as code (tasks/_serializer.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from prefect.cache_policies import TASK_SOURCE, CachePolicy
from prefect.context import TaskRunContext
from prefect.tasks import exponential_backoff
from prefect.utilities.hashing import hash_objects
from pydantic import BaseModel

from leanops.errors import is_transient
from leanops.spec import Spec
from tasks._serializer import SAFE_SERIALIZER, VerifiedRecordStorage

IO_RETRIES = 3
IO_RETRY_DELAYS = exponential_backoff(backoff_factor=1)  # 1, 2, 4 s
IO_RETRY_JITTER = 0.5


def is_retryable(error: BaseException) -> bool:
    """Transient I/O only: what our adapters report as such (S3, MLflow), a refused or timed-out
    connection, or the Prefect API (locks, variables, events) unreachable or answering 429 / 5xx.
    A programming error (TypeError, KeyError ...) or one of our verdicts fails at once."""
    import httpx

    if is_transient(error):
        return True
    if isinstance(error, httpx.TransportError):
        return True
    return isinstance(error, httpx.HTTPStatusError) and (error.response.status_code == 429 or error.response.status_code >= 500)


def retry_transient_only(task, task_run, state) -> bool:
    """Prefect's retry condition: retry a failed attempt only if :func:`is_retryable` says so."""
    try:
        state.result()
    except Exception as error:  # noqa: BLE001 - classified, not swallowed: the state keeps it
        return is_retryable(error)
    return False


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


BY_FINGERPRINT = (Fingerprints() + TASK_SOURCE).configure(key_storage=VerifiedRecordStorage())

# Task options of every stage whose result is cached: `@task(**CACHED, ...)`. The result is written with
# the safe serializer and read back only through the verified record storage of BY_FINGERPRINT.
CACHED: dict[str, Any] = dict(cache_policy=BY_FINGERPRINT, persist_result=True, result_serializer=SAFE_SERIALIZER)
