"""Per-model locks shared by lifecycle tasks: a Prefect global concurrency limit of one slot each.

They serialise read-modify-write steps across runs, workers and machines (the lock lives in the
Prefect server): alias moves (promotion, rollback), appends to a model's drift history, the retrain
cooldown's claims, and registration (find-by-training-key then create: two retrains of the same data
at once, e.g. retrain/weekly and retrain/on-drift, would otherwise both create a version).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Literal

LOCK_TIMEOUT_SECONDS = 300.0
LockPurpose = Literal["aliases", "drift-history", "retrain-cooldown", "registration"]


def lock_name(model_name: str, purpose: LockPurpose) -> str:
    return f"leanops-{purpose}-{model_name}"


@contextmanager
def model_lock(model_name: str, purpose: LockPurpose, timeout_seconds: float = LOCK_TIMEOUT_SECONDS) -> Iterator[None]:
    """Hold the model's ``purpose`` lock: a global concurrency limit with one slot, created on first use."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate
    from prefect.concurrency.sync import concurrency
    from prefect.exceptions import ObjectAlreadyExists

    name = lock_name(model_name, purpose)
    with get_client(sync_client=True) as client:
        try:
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1, active=True))
        except ObjectAlreadyExists:
            existing = client.read_global_concurrency_limit_by_name(name)
            if existing.limit != 1 or not existing.active:  # a lock with two slots (or none) locks nothing
                client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(limit=1, active=True))
    from leanops.settings import get_settings

    # strict: never proceed unlocked if the limit vanished meanwhile, or if a renewal of the lease failed.
    lease = get_settings().lock_lease_seconds
    with concurrency(name, occupy=1, timeout_seconds=timeout_seconds, lease_duration=lease, strict=True):
        yield
