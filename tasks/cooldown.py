"""Claim a retrain against the model's cooldown, and settle the claim when the run ends.

The record (leanops.cooldown.CooldownRecord) lives in a Prefect variable, so it survives restarts of
the server (a row in its database) and of workers; every read-modify-write of it holds the model's
"retrain-cooldown" lock, so two retrains claiming at once see each other. The retrain flow's hooks
settle the claim: completed -> it counts as the last retrain; failed, crashed or cancelled -> released.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

from prefect import get_run_logger, runtime, task
from prefect.cache_policies import NO_CACHE
from prefect.variables import Variable

from leanops import cooldown
from leanops.cooldown import CooldownRecord, RetrainGate
from leanops.spec import Spec, load_spec
from tasks._locks import model_lock
from tasks._policies import RETRY_IO


def _variable_name(model_name: str) -> str:
    return f"leanops-last-retrain-{model_name}".replace("_", "-")


def _read(model_name: str) -> CooldownRecord:
    return CooldownRecord.from_json(Variable.get(_variable_name(model_name), default=None))


def _write(model_name: str, record: CooldownRecord) -> None:
    Variable.set(_variable_name(model_name), record.to_json(), overwrite=True)


def last_retrain_at(spec: Spec) -> datetime | None:
    """When the model's last successful retrain started (any reason)."""
    return _read(spec.name).last_retrain_at


@task(cache_policy=NO_CACHE, **RETRY_IO)
def claim_retrain(spec: Spec, reason: str) -> RetrainGate:
    run_id = str(runtime.flow_run.id or uuid.uuid4())
    with model_lock(spec.name, "retrain-cooldown"):
        gate, record = cooldown.claim(_read(spec.name), reason, run_id, spec.retrain_window.cooldown_minutes)
        if gate.allowed:
            _write(spec.name, record)
    get_run_logger().info(gate.explanation)
    return gate


def settle_claim(model_name: str, run_id: str, succeeded: bool) -> CooldownRecord:
    """The run's claim becomes the last retrain (success) or is given back (failure)."""
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
