"""Helpers the tests share: reading the real Prefect server's API and writing real batches."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import yaml

if TYPE_CHECKING:
    from leanops.settings import Settings


# The Prefect server answers 503 (or 429) for errors a client should retry, e.g. "database is locked" on
# SQLite while the machine is busy; Prefect's own client retries those codes, so our raw reads must too.
RETRYABLE_STATUS = {429, 502, 503}
# Basic-auth strings ("user:password") of Prefect APIs that require one, by API URL (production profile).
API_AUTH: dict[str, str] = {}


def _auth_headers(url: str) -> dict[str, str]:
    import base64

    for api, auth in API_AUTH.items():
        if url.startswith(api):
            return {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()}
    return {}


def prefect_request(method: str, url: str, json=None, timeout: float = 15.0, attempts: int = 8) -> httpx.Response:
    """One call to the Prefect REST API, retried as Prefect's client retries it; raises on any other error."""
    for attempt in range(attempts):
        response = httpx.request(method, url, json=json, timeout=timeout, headers=_auth_headers(url))
        if response.status_code not in RETRYABLE_STATUS or attempt == attempts - 1:
            break
        time.sleep(float(response.headers.get("Retry-After") or min(0.25 * 2**attempt, 4.0)))
    response.raise_for_status()
    return response


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
    return prefect_request("POST", f"{api_url}/events/filter", json={"filter": filter_, "limit": 50}).json()["events"]


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


# Task runs reach the server as events, after the fact: a task run can be listed before its first state is
# recorded (its state is null), and a finished flow run's tasks can still show an earlier state. Every read
# of task runs therefore waits for what it needs instead of taking the first answer.
FINAL_TASK_STATE_TYPES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def _task_runs(api_url: str, flow_run_id: str) -> list[dict]:
    body = {"flow_runs": {"id": {"any_": [str(flow_run_id)]}}, "limit": 200}
    return prefect_request("POST", f"{api_url}/task_runs/filter", json=body).json()


def _task_name(run: dict) -> str:
    # "fit_model-3a1" by default; "load_batch s3://b/k-1.parquet" for tasks with a task_run_name template.
    name = run["name"]
    return name.split(" ", 1)[0] if " " in name else name.rsplit("-", 1)[0]


def task_run_states(api_url: str, flow_run_id: str, expect: tuple[str, ...] = (), timeout: float = 60.0) -> dict[str, str]:
    """Task name -> final state name of every task run of a finished flow run.

    Waits until every task run the server lists has a final state and every task named in ``expect``
    is among them, so an assertion on a state or on a task's absence reads the settled record."""

    def settled():
        runs = _task_runs(api_url, flow_run_id)
        if not all(run["state_type"] in FINAL_TASK_STATE_TYPES for run in runs):
            return None
        states = {_task_name(run): run["state_name"] for run in runs}
        return states if set(expect) <= states.keys() else None

    return wait_for(settled, f"the task runs of flow run {flow_run_id} to settle (expecting {expect})", timeout, 0.3)


def task_started_at(api_url: str, flow_run_id: str, task_name: str) -> str:
    """When the task run named ``task_name`` of a finished flow run started (ISO time), once the runs settled."""
    task_run_states(api_url, flow_run_id, expect=(task_name,))
    (run,) = [run for run in _task_runs(api_url, flow_run_id) if _task_name(run) == task_name]
    return run["start_time"]


def started_task_names(api_url: str, flow_run_id: str) -> set[str]:
    """Names of the task runs of a flow run that is still going whose first state is recorded."""
    return {_task_name(run) for run in _task_runs(api_url, flow_run_id) if run["state_type"] is not None}


def artifacts_of(api_url: str, flow_run_id) -> dict[str, dict]:
    """A flow run's artifacts (its task runs' included) by key."""
    body = {"artifacts": {"flow_run_id": {"any_": [str(flow_run_id)]}}}
    return {a["key"]: a for a in prefect_request("POST", f"{api_url}/artifacts/filter", json=body).json()}


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


def sample_drift_result(status: str = "drift"):
    """A DriftResult as a check of a drifted batch reports it (for event payloads; no data needed)."""
    from leanops.results import DriftResult

    return DriftResult(
        status=status, n_reference=4000, n_current=3000, n_reference_sampled=4000, n_current_sampled=3000,
        features=(), drift_share=0.5, dataset_drift_share=0.3, dataset_drift=status == "drift",
        drifted_features=("dest", "temp"), prediction_drift=True,
    )


def sample_lifecycle_events(model: str = "flights-delay", bucket: str = "leanops") -> dict:
    """One event of each kind a prefect.yaml trigger listens to, built by leanops.events as flows build them."""
    from leanops import events
    from leanops.results import PerformanceCheck

    batch_uri = f"s3://{bucket}/incoming/{model}/2013 07 été.parquet"
    degraded = PerformanceCheck("roc_auc", 0.61, 0.70, "maximize", 0.05, True, 3000)
    return {
        events.BATCH_LANDED: events.batch_landed(bucket, f"incoming/{model}/2013 07 été.parquet", "v1", "0055AED6", 1234, "0a1b2c"),
        events.BATCH_TO_SCORE: events.batch_to_score(events.batch_landed(bucket, f"to-score/{model}/2013 07 été.csv", "v1", "0055AED6", 1234, "0a1b2c")),
        events.DRIFT_DETECTED: events.drift_detected(model, "3", batch_uri, "fp", sample_drift_result(), "http://mlflow/r", "1 of the last 1 checks"),
        events.MODEL_REGISTERED: events.model_registered(model, "4", "run-1", batch_uri, "roc_auc", 0.7),
        events.MODEL_DEGRADED: events.model_degraded(model, "3", batch_uri, "fp", degraded),
    }


def wait_for(condition, what: str, deadline: float = 30.0, interval: float = 0.2):
    """Poll ``condition`` until it returns something truthy (returned); fail after ``deadline`` seconds."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {deadline:.0f} s waiting for {what}")


def stop_process_group(process, timeout: float = 15.0) -> None:
    """SIGTERM a process started with ``start_new_session=True`` and its children; SIGKILL after ``timeout``."""
    import signal

    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def s3_notification(bucket: str, key: str) -> str:
    """A notification body as S3 sends it to SQS (key URL-encoded, one record, fresh ETag and sequencer)."""
    import json
    import uuid
    from urllib.parse import quote_plus

    return json.dumps({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
        "eventTime": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
        "s3": {"bucket": {"name": bucket}, "object": {
            "key": quote_plus(key), "size": 10, "eTag": uuid.uuid4().hex, "sequencer": uuid.uuid4().hex[:16].upper(),
        }},
    }]})


@contextlib.contextmanager
def environment(**values: str):
    """Environment variables for the block; leanops settings (cached) are re-read on entry and exit."""
    from leanops.settings import reset_settings_cache

    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    reset_settings_cache()
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        reset_settings_cache()


# --- deployments: runs that prefect.yaml's deployments and triggers start (fixtures: conftest.py) ---------

# Every deployment of prefect.yaml, by "flow/deployment" name.
DEPLOYMENT_NAMES = (
    "schedule/every-5-minutes", "retrain/on-schedule", "retrain/on-drift", "drift-monitor/on-new-batch",
    "promote/on-new-challenger", "rollback/manual", "rollback/on-degraded", "reconcile/hourly", "score/on-new-batch",
)
# After the first run shows, how long we keep looking for a second one (trigger -> run takes ~0.1 s).
SETTLE = 3.0
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "CRASHED"}


def api_call(api: str, method: str, path: str, body=None) -> httpx.Response:
    return prefect_request(method, f"{api}{path}", json=body)


def runs_of(api: str, deployment_id: str, **parameters) -> list[dict]:
    """Flow runs of a deployment whose parameters include ``parameters``."""
    body = {"flow_runs": {"deployment_id": {"any_": [deployment_id]}}, "limit": 200}
    runs = api_call(api, "POST", "/flow_runs/filter", body).json()
    return [r for r in runs if all(r["parameters"].get(k) == v for k, v in parameters.items())]


def settled_runs(api: str, deployment_id: str, timeout: float = 30.0, **parameters) -> list[dict]:
    wait_for(lambda: runs_of(api, deployment_id, **parameters), f"a run with {parameters}", timeout)
    time.sleep(SETTLE)
    return runs_of(api, deployment_id, **parameters)


def finished_runs(api: str, deployment_id: str, timeout: float, **parameters) -> list[dict]:
    def all_finished():
        runs = runs_of(api, deployment_id, **parameters)
        return runs if runs and all(r["state_type"] in TERMINAL for r in runs) else None

    return wait_for(all_finished, f"runs with {parameters} to finish", timeout)


def automations_of(api: str, deployment_id: str) -> list[dict]:
    automations = api_call(api, "POST", "/automations/filter", {}).json()
    return [a for a in automations if any(action.get("deployment_id") == deployment_id for action in a["actions"])]


def delete_runs(api: str, runs: list[dict]) -> None:
    for run in runs:
        prefect_request("DELETE", f"{api}/flow_runs/{run['id']}")


# --- promote runs that pause for a person's answer ------------------------------------------------------


def promote_in_thread(**parameters):
    """Start promote in a thread under a unique tag, which finds its flow run through the API:
    (thread, {"state": the run's final state once it ends}, tag)."""
    import threading
    import uuid

    from prefect import tags

    from flows.promote import promote

    tag, out = f"t-{uuid.uuid4().hex[:8]}", {}

    def target():
        with tags(tag):
            out["state"] = promote(**parameters, return_state=True)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, out, tag


def paused_run_id(tag: str, timeout: float = 90.0):
    """The id of the flow run tagged ``tag`` once it is paused (waiting for its Resume form)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    def paused():
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[tag])))
        return runs[0].id if runs and runs[0].state is not None and runs[0].state.is_paused() else None

    return wait_for(paused, f"the run tagged {tag} to pause for approval", timeout, 0.3)


def answer_when_paused(tag: str, **run_input) -> None:
    """Answer the Resume form of the run tagged ``tag`` once it is paused and its form is saved."""
    from prefect.flow_runs import resume_flow_run

    run_id = paused_run_id(tag)

    def resumed():
        try:
            resume_flow_run(run_id, run_input=run_input)
        except RuntimeError:  # the form's schema is saved just after the pause: try again
            return False
        return True

    wait_for(resumed, f"run {run_id} to accept the answer", 30, 0.3)
def deploy_prefect_yaml(api: str, env: dict[str, str], names: tuple[str, ...] = DEPLOYMENT_NAMES) -> dict[str, str]:
    """`prefect deploy` of ``names`` (default `--all`) from the project root against ``api`` (``env``: the
    deploying shell's environment); returns {"flow/deployment": id}. The schedules are deployed inactive: their
    runs would start reconciliations and scheduler passes mid-test.

    Inactive from the start, never switched off after the deploy: Prefect's scheduler services generate a
    deployment's runs in one session and insert them in another, so runs generated just before a switch-off
    were inserted after it had deleted the scheduled ones, and the worker ran a scheduler pass mid-module."""
    import sys
    import tempfile

    which = ["--all"] if set(names) == set(DEPLOYMENT_NAMES) else [a for n in names for a in ("--name", n)]
    root = Path(__file__).resolve().parent.parent
    project = yaml.safe_load((root / "prefect.yaml").read_text())
    for deployment in project["deployments"]:
        for schedule in deployment.get("schedules") or []:
            schedule["active"] = False
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="leanops-deploy-") as folder:
        inactive = Path(folder) / "prefect.yaml"
        inactive.write_text(yaml.safe_dump(project, sort_keys=False))
        done = subprocess.run(  # noqa: S603 - fixed argv
            [str(Path(sys.executable).parent / "prefect"), "deploy", *which, "--no-prompt", "--prefect-file", str(inactive)],
            cwd=root, env={**env, "PREFECT_API_URL": api, "PREFECT_CLI_PROMPT": "false"},
            capture_output=True, text=True, timeout=300,
        )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    print(f"\nprefect deploy {' '.join(which)}: {time.monotonic() - started:.1f} s")
    deployed = {name: api_call(api, "GET", f"/deployments/name/{name}").json() for name in names}
    for name, deployment in deployed.items():
        assert not any(schedule["active"] for schedule in deployment["schedules"]), (name, deployment["schedules"])
    return {name: deployment["id"] for name, deployment in deployed.items()}


DAY_MS = 86_400_000


def dated_check(model: str, days_ago: float, settings: Settings, report: bool = True) -> str:
    """A drift check's run as the monitor writes it, started ``days_ago`` days ago, with its report
    attached (finished) or not (still RUNNING)."""
    from leanops import drift_log, tracking

    started = int(time.time() * 1000 - days_ago * DAY_MS)
    run = tracking.start_run(drift_log._monitoring_experiment(model), f"drift-{days_ago}d", {"leanops.model": model},
                             start_time_ms=started, settings=settings)
    if report:
        drift_log.attach_report(run.run_id, "<html>report</html>", "{}", 1000, 1000, settings)
    return run.run_id
