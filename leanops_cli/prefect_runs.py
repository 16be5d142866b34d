"""What the Prefect server knows about a model's runs: its last retrain and its promotions awaiting approval."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

RECENT_RUNS = 200  # the API's page limit


@dataclass(frozen=True)
class RunSummary:
    flow_run_id: str
    name: str
    state: str
    at: datetime | None
    """When it started (or is expected to start)."""
    url: str


def _model_of(parameters: dict[str, Any]) -> str:
    """The model a run's ``spec`` parameter names (a spec name, or a path to ``<model>.yaml``)."""
    spec = str(parameters.get("spec") or "")
    return Path(spec).stem if spec.endswith((".yaml", ".yml")) else spec


def _summary(run) -> RunSummary:
    from leanops_cli.run_commands import flow_run_url

    return RunSummary(str(run.id), run.name, run.state_name or "", run.start_time or run.expected_start_time, flow_run_url(run.id))


def _runs(client, flow_name: str, state_types=None, limit: int = RECENT_RUNS) -> list:
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.sorting import FlowRunSort

    run_filter = None
    if state_types:
        run_filter = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=list(state_types))))
    return client.read_flow_runs(
        flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])), flow_run_filter=run_filter,
        sort=FlowRunSort.EXPECTED_START_TIME_DESC, limit=limit,
    )


def model_runs(models: list[str]) -> tuple[dict[str, RunSummary], dict[str, list[RunSummary]]]:
    """(the latest retrain run of each model, the promote runs of each model paused for approval)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType

    last_retrain: dict[str, RunSummary] = {}
    approvals: dict[str, list[RunSummary]] = {m: [] for m in models}
    with get_client(sync_client=True) as client:
        for run in _runs(client, "retrain"):  # newest first: the first seen per model is its last
            model = _model_of(run.parameters)
            if model in approvals and model not in last_retrain and run.state_type != StateType.SCHEDULED:
                last_retrain[model] = _summary(run)
        for run in _runs(client, "promote", state_types=[StateType.PAUSED]):
            model = _model_of(run.parameters)
            if model in approvals:
                approvals[model].append(_summary(run))
    return last_retrain, approvals
