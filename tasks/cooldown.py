"""Claim a retrain against the model's cooldown, and settle the claim when the run ends.

The record (leanops.cooldown.CooldownRecord) lives in a Prefect variable, so it survives restarts of
the server (a row in its database) and of workers; every read-modify-write of it holds the model's
"retrain-cooldown" lock, so two retrains claiming at once see each other. The retrain flow's hooks
settle the claim: completed -> it counts as the last retrain; failed, crashed or cancelled -> released.
A run killed without a word runs no hook; each claim first settles the other claims whose runs the
server records as ended (a killed run is Crashed by the zombie-run automation, deployments/zombie_runs.py).
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

from uuid import UUID

from prefect import get_client, get_run_logger, runtime, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import StateType
from prefect.variables import Variable

from leanops import cooldown
from leanops.cooldown import CooldownRecord, RetrainGate
from leanops.spec import Spec, load_spec
from tasks._locks import model_lock
from tasks._policies import RETRY_IO


def variable_name(model_name: str) -> str:
    return f"leanops-last-retrain-{model_name}".replace("_", "-")


def _read(model_name: str) -> CooldownRecord:
    return CooldownRecord.from_json(Variable.get(variable_name(model_name), default=None))


def _write(model_name: str, record: CooldownRecord) -> None:
    Variable.set(variable_name(model_name), record.to_json(), overwrite=True)


def cooldown_record(model_name: str) -> CooldownRecord:
    """What the cooldown remembers of the model now: its last successful retrain and the live claims."""
    return _read(model_name)


def last_retrain_at(spec: Spec) -> datetime | None:
    """When the model's last successful retrain started (any reason)."""
    return _read(spec.name).last_retrain_at


_ENDED = {StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED}


def ended_runs(run_ids: list[str]) -> dict[str, bool]:
    """Of these flow runs, the ones that ended (run id -> completed?): a final state, or deleted."""
    ids = {run_id: UUID(run_id) for run_id in run_ids if _is_uuid(run_id)}
    if not ids:
        return {}
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=list(ids.values()))), limit=len(ids))
    states = {str(run.id): run.state_type for run in runs}
    return {run_id: states.get(run_id) == StateType.COMPLETED for run_id in ids if states.get(run_id, StateType.CRASHED) in _ENDED}


def _is_uuid(text: str) -> bool:
    try:
        UUID(text)
    except ValueError:
        return False
    return True


@task(cache_policy=NO_CACHE, **RETRY_IO)
def claim_retrain(spec: Spec, reason: str) -> RetrainGate:
    run_id = str(runtime.flow_run.id or uuid.uuid4())
    with model_lock(spec.name, "retrain-cooldown"):
        stored = _read(spec.name)
        ended = ended_runs([other for other in stored.running if other != run_id])
        gate, record = cooldown.claim(stored, reason, run_id, spec.retrain_window.cooldown_minutes, ended=ended)
        if record != stored:
            _write(spec.name, record)
    if ended:
        get_run_logger().info("settled the claims of retrains that ended without settling them: %s", ended)
    get_run_logger().info(gate.explanation)
    return gate


def settle_claim(model_name: str, run_id: str, succeeded: bool) -> CooldownRecord:
    """The run's claim becomes the last retrain (success) or is given back (failure)."""
    unlocked = _read(model_name)
    if run_id not in unlocked.running:
        # Only the run itself adds its claim, and it has ended: a run that claimed nothing (a cache hit, a
        # refused claim, a retired model) has nothing to settle and takes no lock.
        return unlocked
    with model_lock(model_name, "retrain-cooldown"):
        record = _read(model_name)
        settled = record.succeeded(run_id) if succeeded else record.released(run_id)
        if settled != record:
            _write(model_name, settled)
    return settled


def _settle_from_hook(flow_run, succeeded: bool) -> None:
    log = logging.getLogger("leanops.cooldown")
    try:
        settle_claim(load_spec(flow_run.parameters["spec"]).name, str(flow_run.id), succeeded)
    except Exception as exc:  # noqa: BLE001 - a hook must not raise; an unsettled claim lapses after the cooldown
        log.warning("could not settle the retrain claim of run %s: %s", flow_run.name, exc)


def confirm_retrain_claim(flow, flow_run, state) -> None:
    """Flow hook (on completion): the retrain counts for the cooldown."""
    _settle_from_hook(flow_run, succeeded=True)


def release_retrain_claim(flow, flow_run, state) -> None:
    """Flow hook (on failure, crash, cancellation): a retrain that did not finish uses up no cooldown."""
    _settle_from_hook(flow_run, succeeded=False)
