"""Flow runs whose process died without a word (SIGKILL, OOM kill, a lost machine) end Crashed.

Prefect 3.9 marks such a run nothing by itself: a run started in-process (``python -m flows.retrain``,
the CLI, the demo) has no worker watching it, and a worker that dies with its runs reports nothing
either, so the run stays Running forever. Everything downstream then believes it: the reconciliation
counts its batch as in flight and never re-announces it, and a killed retrain's cooldown claim blocks
the next drift retrain. The server *can* tell: every flow run process emits a
``prefect.flow-run.heartbeat`` event every ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` seconds (default 180
in 3.9, at least 30), and an automation on the *absence* of the next one marks the run Crashed
(Prefect's "detect zombie flows" recipe). This module is that automation's one definition.

Why here and not in prefect.yaml: a prefect.yaml trigger belongs to a deployment and can only start
it; this one changes the state of any flow run, deployed or not. The stack (``infra.stack up``) and
the test session's server create it with :func:`ensure_zombie_automation`, sized from the heartbeat
frequency they give every flow process they start.

The automation tolerates ``MISSED_HEARTBEATS - 1`` late or lost beats: a run is Crashed when no event of
it arrived for ``MISSED_HEARTBEATS`` heartbeat periods. Every process that runs flows against the server
must beat at least that often, or a live run is Crashed under it: keep PREFECT_FLOWS_HEARTBEAT_FREQUENCY
at or below the value the automation was sized with (Prefect's default, 180 s, unless set).
"""

from __future__ import annotations

from datetime import timedelta

AUTOMATION_NAME = "leanops: crash flow runs that stopped sending heartbeats"
MISSED_HEARTBEATS = 3
HEARTBEAT_ENV = "PREFECT_FLOWS_HEARTBEAT_FREQUENCY"


def heartbeat_seconds() -> int | None:
    """The heartbeat period flow runs started from this environment use (None: heartbeats are off)."""
    from prefect.settings import get_current_settings

    return get_current_settings().flows.heartbeat_frequency


def zombie_automation(heartbeat: int):
    """Crash a flow run when, after it started Running or sent a heartbeat, no event of it (a heartbeat
    or any state change) arrives within ``MISSED_HEARTBEATS`` heartbeat periods.

    ``after`` holds the Running event too: the server records it when the run starts, while the first
    heartbeat leaves the process a moment later through a buffered client, and a process killed in
    between (measured: one frozen as soon as the server showed it Running) would never arm the trigger.
    ``prefect.flow-run.*`` in ``expect``, not a list of final states: flow run events are named after the
    state's *name*, so a run ending in a custom-named state would otherwise be "missing" and marked
    Crashed after the fact."""
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    return AutomationCore(
        name=AUTOMATION_NAME,
        description=(
            f"A flow run that sent no heartbeat for {MISSED_HEARTBEATS} x {heartbeat} s (its process was killed, "
            "or its machine lost) is marked Crashed, so reconciliation re-announces its batch and its retrain "
            "cooldown claim is released. Created by leanops (deployments/zombie_runs.py)."
        ),
        enabled=True,
        trigger=EventTrigger(
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            after={"prefect.flow-run.heartbeat", "prefect.flow-run.Running"},
            expect={"prefect.flow-run.*"},
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=MISSED_HEARTBEATS * heartbeat),
        ),
        actions=[ChangeFlowRunState(
            state=StateType.CRASHED,
            message=f"No heartbeat from this flow run for {MISSED_HEARTBEATS * heartbeat} s: its process is gone.",
        )],
    )


def _shape(automation) -> tuple:
    return (
        automation.enabled, automation.description,
        _canonical(automation.trigger.model_dump(mode="json")),
        [_canonical(action.model_dump(mode="json")) for action in automation.actions],
    )


def _canonical(value):
    """``value`` with every list of strings sorted. A trigger's ``after``, ``expect``, ``for_each`` and match
    patterns are sets: they reach JSON in the iteration order of a set, which hangs on the process's string
    hash seed and, when two members share a hash slot, on the order they were inserted in (the order the
    server sent them). Compared as dumped, one automation can differ from itself between two processes."""
    if isinstance(value, dict):
        return {key: _canonical(item) for key, item in value.items()}
    if isinstance(value, list):
        items = [_canonical(item) for item in value]
        return sorted(items) if all(isinstance(item, str) for item in items) else items
    return value


def ensure_zombie_automation(api_url: str, heartbeat: int | None = None) -> str:
    """Create or update the automation on the Prefect server at ``api_url``, sized for ``heartbeat``
    (default: this environment's heartbeat frequency). Idempotent: an automation already in this shape
    is left alone (its open windows on live runs survive), duplicates are removed.
    Returns what was done: created, updated, unchanged, or removed (heartbeats are off)."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    heartbeat = heartbeat_seconds() if heartbeat is None else heartbeat
    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        existing = client.read_automations_by_name(AUTOMATION_NAME)
        if heartbeat is None:
            # Without heartbeats every run would look dead: no automation at all.
            for automation in existing:
                client.delete_automation(automation.id)
            return "removed" if existing else "unchanged"
        wanted = zombie_automation(heartbeat)
        if not existing:
            client.create_automation(wanted)
            return "created"
        keep, *duplicates = existing
        for automation in duplicates:
            client.delete_automation(automation.id)
        if _shape(keep) == _shape(wanted):
            return "unchanged"
        client.update_automation(keep.id, wanted)
        return "updated"
