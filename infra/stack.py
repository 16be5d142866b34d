"""The local stack in one command: ``python -m infra.stack up|down|status``.

``up`` starts, on 127.0.0.1 with all state under ``LEANOPS_HOME`` (default ``.leanops/``):
moto's S3 + SQS endpoint (then the bucket, the batch queue with its dead-letter queue, and the
bucket notification for ``<prefix>*<suffix>``), the MLflow tracking server, the Prefect server
(SQLite) with the automation that marks flow runs without heartbeats Crashed, the S3 event bridge,
the fork server that starts flow runs warm, and a Prefect process worker on the work pool. Each
step is idempotent:
``up`` on a running stack only checks it. ``down`` stops everything (process groups, SIGKILL
fallback). moto keeps its buckets in memory: ``down`` forgets the objects, ``up`` recreates the setup.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import json
import os
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pydantic import SecretStr

from infra import production, services
from infra.services import Service
from leanops.settings import Settings, get_settings

# Settings the bridge and the worker must see exactly as this command saw them (whatever their cwd).
_EXPORTED = (
    "home", "host", "prefect_port", "mlflow_port", "s3_port", "prefect_api_url", "mlflow_tracking_uri",
    "s3_endpoint_url", "s3_use_local_endpoint", "s3_bucket", "s3_incoming_prefix", "s3_incoming_suffix",
    "s3_bucket_allow_list", "s3_scoring_prefix", "s3_scoring_suffixes", "s3_scoring_output_prefix",
    "sqs_queue_name", "sqs_dead_letter_queue_name", "sqs_visibility_timeout_seconds",
    "sqs_wait_seconds", "sqs_max_receive_count", "bridge_max_backoff_seconds", "aws_region", "work_pool_name",
    "serving_port", "serving_workers", "serving_alias_check_seconds",
)
# What the production profile's flow runs also need: where their databases, state and results are, and
# the credentials of the services they call (handed to workers only, never to the servers).
_EXPORTED_PRODUCTION = (
    "profile", "database_prefix", "postgres_url", "mlflow_username", "mlflow_password", "result_storage",
    "alert_state_uri", "optuna_storage",
)


def child_env(settings: Settings) -> dict[str, str]:
    env = {}
    for name in _EXPORTED + (_EXPORTED_PRODUCTION if settings.is_production else ()):
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            text = value.get_secret_value()
        elif isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (list, tuple)):
            text = json.dumps(list(value))
        else:
            text = str(value)
        env[f"LEANOPS_{name.upper()}"] = text
    if settings.s3_use_local_endpoint and not settings.s3_endpoint_url:
        for key, value in services.LOCAL_AWS_ENV.items():
            env[key] = os.environ.get(key, value)
    return env


# --- the services, in start order ------------------------------------------------------------------


def moto(settings: Settings) -> Service:
    return services.moto_server(settings.host, settings.s3_port)


def mlflow(settings: Settings) -> Service:
    server = services.mlflow_server(settings.home, settings.host, settings.mlflow_port, settings.mlflow_artifacts_destination)
    if (settings.mlflow_artifacts_destination or "").startswith("s3://"):  # its artifact proxy writes to S3
        return dataclasses.replace(server, env={**server.env, **services.s3_client_env(settings)})
    return server


def prefect(settings: Settings) -> Service:
    return services.prefect_server(settings.home, settings.host, settings.prefect_port)


def bridge(settings: Settings) -> Service:
    return services.s3_bridge(settings.home, settings.sqs_wait_seconds, child_env(settings))


def flow_run_env() -> dict[str, str]:
    """What every process that runs flows gets from the stack: the heartbeat period the zombie-run
    automation is sized with (deployments/zombie_runs.py), so a live run always beats often enough."""
    from deployments.zombie_runs import HEARTBEAT_ENV, heartbeat_seconds

    heartbeat = heartbeat_seconds()
    return {} if heartbeat is None else {HEARTBEAT_ENV: str(heartbeat)}


def fork_server(settings: Settings) -> Service:
    env = {**services.prefect_env(settings.home, settings.resolved_prefect_api_url), **child_env(settings), **flow_run_env()}
    return services.fork_server(settings.home, settings.resolved_fork_server_socket, env)


def worker(settings: Settings) -> Service:
    # The deployments' flow-run command (prefect.yaml) asks the fork server at this socket for a warm process.
    env = {**child_env(settings), **flow_run_env(), "LEANOPS_FORK_SERVER_SOCKET": str(settings.resolved_fork_server_socket)}
    return services.prefect_worker(
        settings.home, settings.resolved_prefect_api_url, settings.work_pool_name, settings.host,
        settings.worker_health_port, env,
    )


def endpoint(settings: Settings) -> Service:
    """The online endpoint (``python -m serving``): every model of the project's specs folder."""
    env = {**services.prefect_env(settings.home, settings.resolved_prefect_api_url), **child_env(settings)}
    return Service(
        name="serving",
        argv=[str(services.BIN / "python"), "-m", "serving"],
        health_url=f"http://{settings.host}:{settings.serving_port}/health",
        env=env,
        inherits_environment=True,  # it reads MLflow and S3, and follows Prefect's events, with their credentials
        startup_timeout=120.0,
        cwd=Path.cwd(),
    )


def endpoint_url(settings: Settings) -> str:
    return f"http://{settings.host}:{settings.serving_port}"


def all_services(settings: Settings) -> list[Service]:
    if settings.is_production:
        local_s3 = [moto(settings)] if settings.uses_local_s3 else []
        return local_s3 + production.services_in_order(settings, child_env(settings))
    return [
        moto(settings), mlflow(settings), prefect(settings), bridge(settings), fork_server(settings), worker(settings),
        endpoint(settings),
    ]


# --- setup steps -----------------------------------------------------------------------------------


def provision_s3(settings: Settings) -> tuple[str, str]:
    """Bucket, queue + dead-letter queue, bucket notification; returns (queue url, dead-letter url)."""
    from leanops import storage

    storage.ensure_bucket(settings.s3_bucket, settings)
    dead_url, dead_arn = storage.ensure_queue(settings.sqs_dead_letter_queue_name, settings)
    redrive = {"deadLetterTargetArn": dead_arn, "maxReceiveCount": str(settings.sqs_max_receive_count)}
    url, arn = storage.ensure_queue(
        settings.sqs_queue_name,
        settings,
        attributes={"VisibilityTimeout": str(settings.sqs_visibility_timeout_seconds), "RedrivePolicy": json.dumps(redrive)},
    )
    storage.configure_bucket_notifications(
        settings.s3_bucket, arn, settings.s3_incoming_prefix, settings.s3_incoming_suffix, settings,
        also=[(settings.s3_scoring_prefix, suffix) for suffix in settings.s3_scoring_suffixes],
    )
    return url, dead_url


def ensure_zombie_run_automation(settings: Settings) -> str:
    """Flow runs that stop sending heartbeats (process killed) end Crashed instead of Running forever."""
    from deployments.zombie_runs import ensure_zombie_automation

    return ensure_zombie_automation(settings.resolved_prefect_api_url)


def _api_request(settings: Settings, path: str) -> urllib.request.Request:
    request = urllib.request.Request(f"{settings.resolved_prefect_api_url}{path}")
    if settings.prefect_auth_string:
        token = base64.b64encode(settings.prefect_auth_string.get_secret_value().encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    return request


def _api_post(settings: Settings, path: str, body: dict) -> None:
    """POST to our Prefect API; a 409 (it exists already) is fine."""
    request = _api_request(settings, path)
    request.data = json.dumps(body).encode()
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30):  # noqa: S310 - our API
            pass
    except urllib.error.HTTPError as exc:
        if exc.code != 409:
            raise


def ensure_work_pool(settings: Settings, queues: tuple[str, ...] = ()) -> bool:
    """Create the process work pool (and its extra ``queues``) if missing; True if the pool was created.

    One HTTP call each, with the process worker's default job template (what `prefect work-pool create
    --type process` sends): the CLI costs 5-12 s of imports per call here."""
    from prefect.workers.process import ProcessWorker

    created = False
    try:
        with urllib.request.urlopen(_api_request(settings, f"/work_pools/{settings.work_pool_name}"), timeout=10):  # noqa: S310 - our API
            pass
    except urllib.error.HTTPError as exc:
        if exc.code != 404:
            raise
        template = ProcessWorker.get_default_base_job_template()
        _api_post(settings, "/work_pools/", {"name": settings.work_pool_name, "type": "process", "base_job_template": template})
        created = True
    for queue in queues:
        _api_post(settings, f"/work_pools/{settings.work_pool_name}/queues", {"name": queue})
    return created


# --- commands --------------------------------------------------------------------------------------


def _step(label: str, action) -> None:
    t0 = time.monotonic()
    action()
    print(f"  {label:<34} {time.monotonic() - t0:5.1f} s", flush=True)


def up(settings: Settings) -> None:
    home = settings.home
    home.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    step = _step
    print(f"leanops stack ({settings.profile}): state in {home}")
    if settings.is_production:
        up_production(settings)
        print(f"up in {time.monotonic() - started:.1f} s\n")
        status(settings)
        return
    step("S3 + SQS endpoint (moto)", lambda: services.start(moto(settings), home))
    step("bucket, queues, notification", lambda: provision_s3(settings))
    # The three slow starters (each ~10-30 s, mostly imports and migrations) start side by side.
    with ThreadPoolExecutor(max_workers=3) as pool:
        servers = [
            pool.submit(step, "MLflow tracking server", lambda: services.start(mlflow(settings), home)),
            pool.submit(step, "Prefect server", lambda: services.start(prefect(settings), home)),
            pool.submit(step, "fork server (warm flow runs)", lambda: services.start(fork_server(settings), home)),
        ]
        for future in servers:
            future.result()
    step(f"work pool {settings.work_pool_name}", lambda: ensure_work_pool(settings))
    step("zombie-run automation", lambda: ensure_zombie_run_automation(settings))
    step("S3 event bridge", lambda: services.start(bridge(settings), home))
    step("Prefect worker", lambda: services.start(worker(settings), home))
    step("online endpoint", lambda: services.start(endpoint(settings), home))
    print(f"up in {time.monotonic() - started:.1f} s\n")
    status(settings)


def up_production(settings: Settings) -> None:
    """The production layout (infra/production.py): databases, migrations once, two APIs, services, workers."""
    missing = production.missing_secrets(settings)
    if missing:
        raise RuntimeError("the production profile runs with authentication: set " + " and ".join(missing))
    home, exported = settings.home, child_env(settings)
    if settings.uses_local_s3:
        _step("S3 + SQS endpoint (moto)", lambda: services.start(moto(settings), home))
    _step("bucket, queues, notification", lambda: provision_s3(settings))
    # The slow starters side by side: each worker's fork server (imports) from the start, then, once the
    # databases exist, MLflow (its migrations) and Prefect (migrations, two APIs, the services).
    created: list[str] = []

    def prefect_server() -> None:
        if production.needs_migration(settings, created):
            _step("Prefect migrations (once)", lambda: production.migrate(settings))
        with ThreadPoolExecutor(max_workers=3) as pool:
            for future in [
                pool.submit(_step, "Prefect API a", lambda: services.start(production.prefect_api(settings, 0), home)),
                pool.submit(_step, "Prefect API b", lambda: services.start(production.prefect_api(settings, 1), home)),
                pool.submit(_step, "Prefect background services", lambda: services.start(production.prefect_services(settings), home)),
            ]:
                future.result()

    with ThreadPoolExecutor(max_workers=8) as pool:
        # Started first, waited for last: their imports are the slowest start, and nothing else needs them.
        fork_servers = [
            pool.submit(_step, f"fork server {name}", lambda i=i: services.start(production.fork_server(settings, i, exported), home))
            for i, name in enumerate(production.WORKERS)
        ]
        _step("PostgreSQL databases", lambda: created.extend(production.ensure_databases(settings)))
        production.mlflow_auth_config(settings)
        servers = [
            pool.submit(_step, "MLflow (PostgreSQL, S3, basic auth)", lambda: services.start(production.mlflow(settings), home)),
            pool.submit(prefect_server),
        ]
        for future in servers:
            future.result()
        queues = tuple(production.worker_queue(i) for i in range(len(production.WORKERS)))
        _step(f"work pool {settings.work_pool_name} + queues", lambda: ensure_work_pool(settings, queues))
        # Nothing below waits on another: the block (read by flow runs, not by workers), the bridge, the workers.
        futures = fork_servers + [
            pool.submit(_step, "result storage block", lambda: production.ensure_result_storage(settings)),
            pool.submit(_step, "S3 event bridge (-> API a)", lambda: services.start(production.bridge(settings, exported), home)),
        ] + [
            pool.submit(_step, f"Prefect worker {name} (-> API {name})", lambda i=i: services.start(production.worker(settings, i, exported), home))
            for i, name in enumerate(production.WORKERS)
        ]
        for future in futures:
            future.result()


def down(settings: Settings, drop_data: bool = False) -> None:
    for service in reversed(all_services(settings)):
        t0 = time.monotonic()
        was_running = services.stop(service, settings.home)
        outcome = f"stopped in {time.monotonic() - t0:.1f} s" if was_running else "was not running"
        print(f"  {service.name:<16} {outcome}", flush=True)
    if drop_data and settings.is_production:
        production.drop_databases(settings)
        print(f"  dropped databases {', '.join(settings.database_name(p) for p in production.DATABASES)}", flush=True)


def describe(service: Service, settings: Settings) -> str:
    if service.name == "prefect-server":
        return f"UI http://{settings.host}:{settings.prefect_port}  API {settings.resolved_prefect_api_url}"
    if service.name.startswith("prefect-api-"):
        return f"API {service.health_url.removesuffix('/health')}"
    if service.name == "prefect-services":
        return "scheduler, triggers, event persister... (once, for both APIs)"
    if service.name.startswith(("fork-server-", "prefect-worker-")):
        worker = service.name.rsplit("-", 1)[1]
        return f"pool {settings.work_pool_name} queues default, worker-{worker}  home {settings.home / f'worker-{worker}'}"
    if service.name == "mlflow-server":
        return f"UI {settings.resolved_mlflow_tracking_uri}"
    if service.name == "s3-endpoint":
        return f"{settings.resolved_s3_endpoint_url}  bucket s3://{settings.s3_bucket}/{settings.s3_incoming_prefix}*{settings.s3_incoming_suffix}"
    if service.name == "s3-bridge":
        age = _heartbeat_age(service.heartbeat_file)
        running = services.read_pid(service, settings.home) is not None
        polled = f", last poll {age:.0f} s ago" if age is not None and running else ""
        return f"sqs {settings.sqs_queue_name} -> {settings.resolved_prefect_api_url}/events{polled}"
    if service.name == "fork-server":
        return f"socket {settings.resolved_fork_server_socket}"
    if service.name == "serving":
        return f"{endpoint_url(settings)}/models/<name>/predict  ready {endpoint_url(settings)}/ready"
    if service.name == "prefect-worker":
        return f"pool {settings.work_pool_name}  health {service.health_url}"
    return service.health_url


def _heartbeat_age(path: Path | None) -> float | None:
    try:
        return time.time() - path.stat().st_mtime if path else None
    except FileNotFoundError:
        return None


def status(settings: Settings) -> bool:
    """Print each service's state; True if all run."""
    healthy = True
    for service in all_services(settings):
        state = services.status(service, settings.home)
        pid = services.read_pid(service, settings.home)
        healthy &= state == "running"
        print(f"  {service.name:<16} {state:<22} pid {pid or '-':<8} {describe(service, settings)}")
    print(f"  logs: {settings.home / 'logs'}")
    return healthy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.stack", description="Start, stop or inspect the local leanops stack.")
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--profile", choices=["embedded", "production"], default=None,
                        help="overrides LEANOPS_PROFILE (default: embedded)")
    parser.add_argument("--drop-data", action="store_true", help="down: also drop the production profile's databases")
    args = parser.parse_args(argv)
    settings = get_settings()
    if args.profile:
        settings = settings.model_copy(update={"profile": args.profile})
    if args.command == "up":
        try:
            up(settings)
        except Exception as exc:  # noqa: BLE001 - one readable line; the log files hold the rest
            print(f"\nstack up failed: {exc}\n(`python -m infra.stack down` stops what started)", file=sys.stderr)
            return 1
        return 0
    if args.command == "down":
        down(settings, drop_data=args.drop_data)
        return 0
    return 0 if status(settings) else 1


if __name__ == "__main__":
    sys.exit(main())
