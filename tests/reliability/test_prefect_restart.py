"""Scenario 4: the Prefect server restarts while the S3 bridge has messages in flight.

The real chain runs: objects put in a bucket notify the session's SQS queue, the S3 bridge posts
`leanops.batch.landed` events, the drift-monitor deployment's trigger (prefect.yaml's `on-new-batch`,
narrowed to this test's bucket) creates runs, and a process worker runs them in processes forked from the
session's fork server. Then the session's Prefect server process is really stopped (SIGTERM, SIGKILL after
its grace) right after three more objects land, so their notifications are in SQS or in the bridge's hands,
one more lands while it is down, and it is started again on the same database.

What a restart loses, and what brings it back:
- The server keeps events it accepted in memory until its trigger service acts on them: an event accepted
  just before the stop can be gone with no run. The bridge deletes a message only once the server accepted
  its events, so the only loss is inside the server; the hourly reconciliation (run here at once) announces
  every object without a processed mark again.
- The server forgets which event ids it saw: a redelivery after the restart (sent here on purpose, with the
  id of an object already checked) starts a second check. Checks are idempotent: the drift result is cached
  by the batch's fingerprint, the history keeps one row per batch and champion, the mark is one per object.
- The worker gives up after ~20 s without its server; the stack restarts it (infra/respawn.py).

Outcome asserted: every object has exactly one processed mark and one drift verdict (the same), none is
lost, and the server is back (healthy, with the session's zombie-run automation) before the test ends."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest
import yaml

from leanops import datasets, drift, manifest, monitoring, storage
from leanops.events import BATCH_LANDED
from reliability.faults import processed_mark
from support import prefect_request, read_events, wait_for

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
UID = uuid.uuid4().hex[:6]
BUCKET = f"restart-{UID}"
POOL = f"restart-pool-{UID}"
UNFINISHED = {"SCHEDULED", "PENDING", "RUNNING", "PAUSED", "CANCELLING", None}


def on_new_batch() -> tuple[dict, dict]:
    """prefect.yaml's drift-monitor deployment and the work pool's job variables, as `prefect deploy` reads them."""
    config = yaml.safe_load((REPO / "prefect.yaml").read_text())
    (deployment,) = [d for d in config["deployments"] if d["entrypoint"].startswith("flows/drift_monitor.py")]
    return deployment, config["definitions"]["work_pool"]["job_variables"]


@pytest.fixture
def drift_deployment(stack, fork_server, small_champion, tmp_path, settings):
    """prefect.yaml's on-new-batch deployment on the session's server (its trigger narrowed to this test's
    bucket, so no other test's objects start it) and a process worker of its own pool. Yields its id."""
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger

    from infra import services, stack as local_stack

    definition, job_variables = on_new_batch()
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=POOL, type="process"))
        deployment_id = client.create_deployment(
            flow_id=client.create_flow_from_name("drift-monitor"), name=f"on-new-batch-{UID}",
            entrypoint=definition["entrypoint"], work_pool_name=POOL, job_variables=job_variables,
            pull_steps=[{"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}],
        )
        for spec in definition["triggers"]:
            fields = {k: v for k, v in spec.items() if k != "type"}
            trigger = DeploymentEventTrigger(**{**fields, "match": {"prefect.resource.id": f"s3://{BUCKET}/*"}})
            trigger.set_deployment_id(deployment_id)
            client.create_automation(trigger.as_automation())
    home = tmp_path / "worker"
    env = {
        **local_stack.child_env(settings), **local_stack.flow_run_env(),
        "LEANOPS_FORK_SERVER_SOCKET": str(settings.resolved_fork_server_socket),
        "LEANOPS_SPECS_DIR": str(small_champion["specs"]),
    }
    port = _free_port()
    worker = services.prefect_worker(home, settings.resolved_prefect_api_url, POOL, settings.host, port, env)
    services.start(worker, home)
    yield str(deployment_id)
    services.stop(worker, home)
    api = settings.resolved_prefect_api_url
    prefect_request("DELETE", f"{api}/automations/owned-by/prefect.deployment.{deployment_id}")
    prefect_request("DELETE", f"{api}/deployments/{deployment_id}")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def runs_of(api: str, deployment_id: str) -> list[dict]:
    body = {"flow_runs": {"deployment_id": {"any_": [deployment_id]}}, "limit": 200}
    return prefect_request("POST", f"{api}/flow_runs/filter", json=body).json()


def notification_of(event: dict) -> str:
    """The bucket notification the bridge turned into ``event``: delivering it again gives the same event id."""
    payload = event["payload"]
    from urllib.parse import quote_plus

    return json.dumps({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
        "eventTime": event["occurred"],
        "s3": {"bucket": {"name": payload["bucket"]}, "object": {
            "key": quote_plus(payload["key"]), "size": payload["size"], "eTag": payload["etag"],
            "sequencer": payload["sequencer"], **({"versionId": payload["version_id"]} if payload["version_id"] else {}),
        }},
    }]})


@pytest.mark.timeout(1500)  # the session's services, fork server and checks: minutes when the machine is loaded
def test_a_prefect_server_restart_with_messages_in_flight_loses_no_batch_and_checks_each_once(
    drift_deployment, small_champion, s3_bridge, stack, settings, record,
):
    from flows.reconcile import reconcile
    from infra import services, stack as local_stack

    row = record("4 Prefect server restarted, bridge messages in flight", "server stop + start; 1 redelivery after it")
    api = settings.resolved_prefect_api_url
    queue_url, _ = s3_bridge
    model = small_champion["name"]
    storage.ensure_bucket(BUCKET, settings)
    _, queue_arn = storage.ensure_queue(settings.sqs_queue_name, settings)
    storage.configure_bucket_notifications(BUCKET, queue_arn, settings.s3_incoming_prefix, settings.s3_incoming_suffix, settings)

    def put(month: int) -> str:
        frame = datasets.flights_sample([month], rows_per_month=1200, seed=40 + month)
        return storage.write_table(frame, f"s3://{BUCKET}/incoming/{model}/2013-{month:02d} été.parquet")

    # Two objects checked before anything goes wrong.
    before = [put(7), put(8)]
    wait_for(lambda: all(processed_mark(uri) for uri in before), "the first two checks", 300, 1.0)
    first_event = read_events(api, BATCH_LANDED, before[0])[0]

    # Three land, and the server stops at once: their notifications are in SQS or in the bridge's hands.
    in_flight = [put(9), put(10), put(11)]
    server = local_stack.prefect(settings)
    stopped_at = time.monotonic()
    services.stop(server, settings.home)
    try:
        while_down = [put(12)]
        assert not services.is_healthy(server)
    finally:
        services.start(server, settings.home)
    restarted_in = time.monotonic() - stopped_at
    # The server forgot the event ids it saw: this redelivery of the first object's notification is new to it.
    storage.send_message(queue_url, notification_of(first_event), settings)

    uris = before + in_flight + while_down
    announced: list[str] = []

    def all_checked() -> bool:
        """Once the queue is drained and no check runs, every object has its mark, or the reconciliation
        (what reconcile/hourly runs) announces those without one and no check is about to take."""
        if storage.queue_counts(queue_url) != (0, 0) or any(r["state_type"] in UNFINISHED for r in runs_of(api, drift_deployment)):
            return False
        if all(processed_mark(uri) for uri in uris):
            return True
        announced.extend(reconcile(prefix=f"s3://{BUCKET}/incoming/", min_age_minutes=0))
        return False

    wait_for(all_checked, "every object checked", 600, 2.0)
    runs = runs_of(api, drift_deployment)

    history = drift.read_history(monitoring.history_uri(model))
    for uri in uris:
        mark = processed_mark(uri)
        verdicts = list(history.loc[history["batch_uri"].map(manifest.unversioned) == uri, "status"])
        assert mark is not None and verdicts == [mark.status], (uri, mark, verdicts)
    markers = [m for m in storage.list_objects(manifest.manifest_root(settings)) if m.uri.endswith(".json")]
    marked = [json.loads(storage.read_bytes(m.uri, settings)) for m in markers]
    assert sorted(m["uri"] for m in marked if m["uri"].startswith(f"s3://{BUCKET}/")) == sorted(uris)
    assert reconcile(prefix=f"s3://{BUCKET}/incoming/", min_age_minutes=0) == []
    # Every run that ended, ended well (a duplicate re-checks; it does not fail).
    assert {run["state_name"] for run in runs} == {"Completed"}, [(r["name"], r["state_name"]) for r in runs]
    assert services.is_healthy(server)
    row.survived, row.recover_seconds = True, restarted_in
    checks = len(runs)
    row.data_lost = f"none ({len(uris)} objects, {checks} checks, {len(set(announced))} re-announced by reconcile)"
