"""Helpers the tests share: reading the real Prefect server's API and writing real batches."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import yaml


def read_events(api_url: str, event_name: str, resource_id: str | None = None, since: datetime | None = None) -> list[dict]:
    """Events as the server stored them (POST /api/events/filter)."""
    filter_: dict = {
        "event": {"name": [event_name]},
        "occurred": {
            "since": (since or datetime.now(timezone.utc) - timedelta(hours=1)).isoformat(),
            "until": (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat(),
        },
    }
    if resource_id is not None:
        filter_["resource"] = {"id": [resource_id]}
    response = httpx.post(f"{api_url}/events/filter", json={"filter": filter_, "limit": 50}, timeout=10)
    response.raise_for_status()
    return response.json()["events"]


def wait_for_events(api_url: str, event_name: str, resource_id: str | None = None, count: int = 1, timeout: float = 20.0, since: datetime | None = None) -> list[dict]:
    """Poll until at least ``count`` matching events are stored (the server's event pipeline is asynchronous)."""
    deadline = time.monotonic() + timeout
    found: list[dict] = []
    while time.monotonic() < deadline:
        found = read_events(api_url, event_name, resource_id, since)
        if len(found) >= count:
            return found
        time.sleep(0.5)
    return found


def task_run_states(api_url: str, flow_run_id: str) -> dict[str, str]:
    """Task name -> state name of every task run of a flow run."""
    body = {"flow_runs": {"id": {"any_": [str(flow_run_id)]}}, "limit": 200}
    response = httpx.post(f"{api_url}/task_runs/filter", json=body, timeout=10)
    response.raise_for_status()
    return {run["name"].rsplit("-", 1)[0]: run["state"]["name"] for run in response.json()}


def spec_copy(tmp_path: Path, name: str, **overrides) -> Path:
    """The flights spec under another model name (tests never share a registered model)."""
    source = Path(__file__).resolve().parent.parent / "specs" / "flights-delay.yaml"
    data = yaml.safe_load(source.read_text())
    data["name"] = name
    for dotted, value in overrides.items():
        node = data
        *parents, leaf = dotted.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path
