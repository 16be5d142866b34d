"""The flows end to end on the production profile, started as `python -m infra.stack up --profile production`
starts it (infra.stack.up_production): Prefect on PostgreSQL with Redis messaging, two API processes and
the background services apart, MLflow on PostgreSQL with S3 artifacts, basic auth on both, two process
workers with their own homes, task results and cache records in the bucket.

Everything is driven as a team would: prefect.yaml deployed to that server, runs created on its
deployments (pinned to a worker by its own work queue), objects landing in S3 reaching the drift check
through SQS and the bridge, and prefect.yaml's triggers chaining the rest (registered -> promote,
drift -> retrain). One stack for the module, with its own databases, Redis database and ports; all of it
is dropped at the end.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from infra.production import claim_redis_database, operator_environment
from leanops import datasets, events, storage
from support import API_AUTH, api_call, automations_of, deploy_prefect_yaml, read_events, spec_copy, task_run_states, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.production]

UID = uuid.uuid4().hex[:6]
MODEL = f"prod-{UID}"
AUTH = ("ops", f"prefect-{UID}")
MLFLOW_PASSWORD = f"mlflow-{UID}-pw"
# Redis databases the tests may claim (one per module run; Prefect's streams and groups have fixed names).
REDIS_DATABASES = range(12, 16)
CLAIM_KEY = "leanops-e2e-claim"
# Small but real: 6,000 flights of January-June and 60 trees (one Optuna trial when tuned); July drifts
# against them (test_drift_monitor.py).
SMALL_MODEL = {"model__params__n_estimators": 60, "retrain_window__cooldown_minutes": 0, "tuning__n_trials": 1}
RUN_TIMEOUT = 300.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def specs_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("production-specs")
    spec_copy(folder, MODEL, retrain_window__prefix=f"windows/{MODEL}/", schedule__cron=None, **SMALL_MODEL)
    return folder


@pytest.fixture(scope="module")
def started(tmp_path_factory, specs_dir):
    """The production layout, started once for the module, with prefect.yaml deployed to it; yields its
    Settings and the deployments' ids. Prints the start time."""
    from infra import production as layout
    from infra import services, stack
    from leanops.settings import Settings

    home = tmp_path_factory.mktemp("production")
    settings = Settings(
        profile="production", home=home, database_prefix=f"leanops_e2e_{UID}", redis_url=claim_redis_database(REDIS_DATABASES, CLAIM_KEY, UID, hold_seconds=3600), database_templates=True,
        prefect_auth_string=":".join(AUTH), mlflow_password=MLFLOW_PASSWORD,
        prefect_port=_free_port(), prefect_second_port=_free_port(), mlflow_port=_free_port(), s3_port=_free_port(),
        worker_health_port=_free_port(), worker_second_health_port=_free_port(),
        sqs_visibility_timeout_seconds=3, sqs_wait_seconds=2, bridge_max_backoff_seconds=2,
        mlflow_tracking_uri=None, prefect_api_url=None,
    )
    for api in settings.prefect_api_urls:
        API_AUTH[api] = ":".join(AUTH)
    with operator_environment(PREFECT_API_AUTH_STRING=":".join(AUTH), PREFECT_HOME=str(home / "deployer")):
        deployer_env = dict(os.environ)
    started = time.monotonic()
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            # prefect.yaml is deployed as soon as the pool exists, while the workers and fork servers start.
            deploying = pool.submit(deploy_when_the_pool_exists, settings, deployer_env)
            with operator_environment(LEANOPS_SPECS_DIR=str(specs_dir), LEANOPS_SLACK_TOKEN=""):
                stack.up_production(settings)
            print(f"\nproduction stack up: {time.monotonic() - started:.1f} s (load {os.getloadavg()[0]:.1f})")
            deployments = deploying.result()
        yield settings, deployments
    finally:
        with ThreadPoolExecutor() as pool:  # each waits out its own grace period: side by side
            list(pool.map(lambda service: services.stop(service, home), stack.all_services(settings)))
        layout.drop_databases(settings)
        import redis

        redis.Redis.from_url(settings.redis_url.get_secret_value()).flushdb()
        for api in settings.prefect_api_urls:
            API_AUTH.pop(api, None)


def deploy_when_the_pool_exists(settings, env: dict[str, str]) -> dict[str, str]:
    """prefect.yaml deployed to API a once its work pool exists; rollback on degradation switched off (a
    drifted month may also score worse, and a rollback would move the alias under the tests)."""
    api = settings.prefect_api_urls[0]
    pool_url = f"{api}/work_pools/{settings.work_pool_name}"
    wait_for(lambda: _answers(pool_url), f"the work pool at {pool_url}", layout_startup_timeout(), 0.5)
    ids = deploy_prefect_yaml(api, env)
    for automation in automations_of(api, ids["rollback/on-degraded"]):
        api_call(api, "PATCH", f"/automations/{automation['id']}", {"enabled": False})
    return ids


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, auth=AUTH, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def layout_startup_timeout() -> float:
    from infra import production as layout

    return layout.STARTUP_TIMEOUT


@pytest.fixture(scope="module")
def production(started):
    return started[0]


@pytest.fixture(scope="module")
def deployed(started) -> dict[str, str]:
    return started[1]


@pytest.fixture(scope="module")
def training(production):
    frame = datasets.flights_sample(range(1, 7), rows_per_month=1000, seed=3)
    return storage.write_table(frame, f"s3://{production.s3_bucket}/windows/{MODEL}/2013-h1.parquet", production)


def run_on_worker(production, deployment_id: str, queue: str, **parameters) -> dict:
    """A run of the deployment on the worker polling ``queue``, waited for until it ends."""
    api = production.prefect_api_urls[0]
    body = {"parameters": parameters, "work_queue_name": queue}
    run_id = api_call(api, "POST", f"/deployments/{deployment_id}/create_flow_run", body).json()["id"]
    return finished(production, run_id)


def finished(production, run_id: str) -> dict:
    api = production.prefect_api_urls[0]

    def ended():
        run = api_call(api, "GET", f"/flow_runs/{run_id}").json()
        return run if run["state_type"] in {"COMPLETED", "FAILED", "CANCELLED", "CRASHED"} else None

    return wait_for(ended, f"flow run {run_id} to end", RUN_TIMEOUT, 0.5)


def runs_of(production, deployment_id: str, **parameters) -> list[dict]:
    body = {"flow_runs": {"deployment_id": {"any_": [deployment_id]}}, "limit": 50}
    runs = api_call(production.prefect_api_urls[0], "POST", "/flow_runs/filter", body).json()
    return [r for r in runs if all(r["parameters"].get(k) == v for k, v in parameters.items())]


def triggered_run(production, deployment_id: str, what: str, timeout: float = 90.0, **parameters) -> dict:
    """The one run a trigger of the deployment created; on a timeout the error shows Prefect's event
    streams in Redis (each consumer group's lag and pending messages) to tell a lost event from a slow one."""
    try:
        wait_for(lambda: runs_of(production, deployment_id, **parameters), what, timeout, 0.5)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; automations' events: {automation_events(production)}; Redis streams: {redis_streams(production)}") from None
    [run] = runs_of(production, deployment_id, **parameters)
    return run


def automation_events(production) -> list[str]:
    """What the triggers and actions services said (triggered, action.triggered/executed/failed), oldest first."""
    body = {"filter": {"event": {"prefix": ["prefect.automation."]}, "order": "ASC"}, "limit": 50}
    found = api_call(production.prefect_api_urls[0], "POST", "/events/filter", body).json()["events"]
    return [f"{e['occurred']} {e['event']} {e['resource'].get('prefect.resource.name', '')} {e['payload'].get('reason', '')}" for e in found]


def redis_streams(production) -> dict:
    import redis

    client = redis.Redis.from_url(production.redis_url.get_secret_value(), decode_responses=True)
    streams = [key for key in client.scan_iter() if client.type(key) == "stream"]
    # A message a consumer failed on max_retries times goes to prefect-redis' dead-letter keys (dlq:*).
    return {"dead-lettered": sorted(client.scan_iter("dlq*")), **{
        stream: {"length": client.xlen(stream), "groups": [
            {k: group.get(k) for k in ("name", "consumers", "pending", "lag", "last-delivered-id")} for group in client.xinfo_groups(stream)
        ]}
        for stream in streams
    }}


def mlflow_get(production, path: str, auth=("admin", MLFLOW_PASSWORD)) -> httpx.Response:
    return httpx.get(f"{production.resolved_mlflow_tracking_uri}{path}", auth=auth, timeout=30)


def champion_version(production) -> str | None:
    response = mlflow_get(production, f"/api/2.0/mlflow/registered-models/alias?name={MODEL}&alias=champion")
    return response.json()["model_version"]["version"] if response.status_code == 200 else None


def bucket_keys(production, prefix: str) -> list[str]:
    """Every key under ``prefix`` in the stack's bucket (boto3 against its S3 endpoint)."""
    client = storage.s3_client(production)
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=production.s3_bucket, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def record_of(api: str, flow_run_id: str, task: str) -> str:
    """Where the result of the flow run's ``task`` is stored (its cache record's key), as its final state says."""
    body = {"flow_runs": {"id": {"any_": [flow_run_id]}}, "limit": 200}
    [task_run] = [t for t in api_call(api, "POST", "/task_runs/filter", body).json() if t["name"].rsplit("-", 1)[0] == task]
    return task_run["state"]["data"]["storage_key"]


@pytest.fixture(scope="module")
def first_retrain(production, deployed, training):
    """Retrain on worker A (its own queue): features, model and cache records written from worker A."""
    from infra import production as layout

    run = run_on_worker(production, deployed["retrain/on-schedule"], layout.worker_queue(0), spec=MODEL)
    return run


# --- authentication ------------------------------------------------------------------------------


def test_prefect_and_mlflow_refuse_requests_without_credentials_and_serve_them_with(production):
    for api in production.prefect_api_urls:
        assert httpx.get(f"{api}/flows/count", timeout=30).status_code == 401
        assert httpx.post(f"{api}/flows/count", auth=("ops", "wrong"), timeout=30).status_code == 401
        assert httpx.post(f"{api}/flows/count", auth=AUTH, timeout=30).status_code == 200
    search = "/api/2.0/mlflow/experiments/search?max_results=1"
    assert mlflow_get(production, search, auth=None).status_code == 401
    assert mlflow_get(production, search, auth=("admin", "wrong")).status_code == 401
    assert mlflow_get(production, search).status_code == 200


# --- retrain on worker A, the same on worker B ----------------------------------------------------


def test_a_retrain_on_worker_a_registers_a_version_in_mlflow_on_postgres_with_artifacts_in_s3(production, first_retrain):
    import asyncpg

    from infra import production as layout

    assert first_retrain["state_name"] == "Completed", first_retrain["state"]
    assert first_retrain["work_queue_name"] == "worker-a"
    fork_log = layout.fork_server(production, 0, {}).log_file(production.home).read_text()
    assert f"(flow run {first_retrain['id']})" in fork_log
    [version] = mlflow_get(production, f"/api/2.0/mlflow/registered-models/get?name={MODEL}").json()["registered_model"]["latest_versions"]

    async def versions_in_postgres() -> list[str]:
        connection = await asyncpg.connect(production.database_url("mlflow"))
        try:
            return [str(row["version"]) for row in await connection.fetch("SELECT version FROM model_versions WHERE name = $1", MODEL)]
        finally:
            await connection.close()

    assert asyncio.run(versions_in_postgres()) == [version["version"]]
    # Through MLflow's artifact proxy, into the bucket.
    run = mlflow_get(production, f"/api/2.0/mlflow/runs/get?run_id={version['run_id']}").json()["run"]
    assert run["info"]["artifact_uri"].startswith("mlflow-artifacts:")
    assert any(key.endswith("/MLmodel") for key in bucket_keys(production, "mlflow/"))


def test_the_registration_triggers_promote_which_moves_the_champion_alias(production, deployed, first_retrain):
    promote = triggered_run(production, deployed["promote/on-new-challenger"], "the promote run", spec=MODEL)
    assert finished(production, promote["id"])["state_name"] == "Completed"
    assert champion_version(production) == promote["parameters"]["version"] == "1"


def test_worker_b_finds_the_features_worker_a_cached_in_the_bucket_and_no_worker_keeps_them_on_disk(production, deployed, first_retrain):
    from infra import production as layout

    api = production.prefect_api_urls[0]
    # Tuned, it is another retrain (a rerun of A's would return A's version before reading any data), on
    # the same batch and spec: the same features. Its challenger is not this test's subject, so no promote.
    for automation in automations_of(api, deployed["promote/on-new-challenger"]):
        api_call(api, "PATCH", f"/automations/{automation['id']}", {"enabled": False})
    second = run_on_worker(production, deployed["retrain/on-schedule"], layout.worker_queue(1), spec=MODEL, tune=True)

    assert second["state_name"] == "Completed", second["state"]
    fork_log = layout.fork_server(production, 1, {}).log_file(production.home).read_text()
    assert f"(flow run {second['id']})" in fork_log
    assert task_run_states(api, first_retrain["id"], expect=("build_features",))["build_features"] == "Completed"
    assert task_run_states(api, second["id"], expect=("build_features",))["build_features"] == "Cached"
    # Worker B read the result worker A wrote for build_features: its payload, and the cache record (its
    # metadata, under cache-records/ by its cache key: tasks/_serializer.py) naming it, both in the bucket.
    [written, read] = [record_of(api, run["id"], "build_features") for run in (first_retrain, second)]
    assert written == read
    payload = written.rsplit("/", 1)[-1]
    assert f"prefect-results/{payload}" in bucket_keys(production, "prefect-results/")
    client = storage.s3_client(production)
    [cache_record] = [
        key for key in bucket_keys(production, "prefect-results/cache-records/")
        if payload in client.get_object(Bucket=production.s3_bucket, Key=key)["Body"].read().decode(errors="replace")
    ]
    cache_key = cache_record.rsplit("/", 1)[-1]
    for index in range(len(layout.WORKERS)):
        home = layout.worker_home(production, index)
        on_disk = [p for p in home.rglob("*") if payload in p.name or cache_key in p.name or p.name == "storage"]
        assert on_disk == [], f"worker {layout.WORKERS[index]} keeps results on its disk: {on_disk}"


# --- a batch lands: the bridge, the drift check, the drift trigger ---------------------------------


def test_a_drifted_batch_landing_in_s3_gets_a_verdict_and_its_drift_event_triggers_a_retrain(production, deployed):
    wait_for(lambda: champion_version(production), "a champion", 60)
    key = f"{production.s3_incoming_prefix}{MODEL}/2013-07.parquet"
    uri = storage.write_table(datasets.flights_sample([7], rows_per_month=2500, seed=5), f"s3://{production.s3_bucket}/{key}", production)

    check = triggered_run(production, deployed["drift-monitor/on-new-batch"], "the drift check of the landed batch", key=key)
    assert finished(production, check["id"])["state_name"] == "Completed"
    api = production.prefect_api_urls[0]

    def drift_detected() -> list[dict]:  # stored by the event persister a moment after the run emitted it
        return [e for e in read_events(api, events.DRIFT_DETECTED, events.model_resource_id(MODEL)) if e["payload"]["batch_uri"] == uri]

    [detected] = wait_for(drift_detected, "the drift check's leanops.drift.detected event", 30, 0.5)
    assert detected["payload"]["status"] == "drift"

    retrain = triggered_run(production, deployed["retrain/on-drift"], "the drift-triggered retrain", spec=MODEL)
    assert finished(production, retrain["id"])["state_name"] == "Completed"
