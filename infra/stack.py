"""The local stack in one command: ``python -m infra.stack up|down|status``.

``up`` starts, on 127.0.0.1 with all state under ``LEANOPS_HOME`` (default ``.leanops/``):
moto's S3 + SQS endpoint (then the bucket, the batch queue with its dead-letter queue, and the
bucket notification for ``<prefix>*<suffix>``), the MLflow tracking server, the Prefect server
(SQLite), the S3 event bridge, the fork server that starts flow runs warm, and a Prefect process
worker on the work pool. Each step is idempotent:
``up`` on a running stack only checks it. ``down`` stops everything (process groups, SIGKILL
fallback). moto keeps its buckets in memory: ``down`` forgets the objects, ``up`` recreates the setup.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from infra import services
from infra.services import Service
from leanops.settings import Settings, get_settings

# Settings the bridge and the worker must see exactly as this command saw them (whatever their cwd).
_EXPORTED = (
    "home", "host", "prefect_port", "mlflow_port", "s3_port", "prefect_api_url", "mlflow_tracking_uri",
    "s3_endpoint_url", "s3_use_local_endpoint", "s3_bucket", "s3_incoming_prefix", "s3_incoming_suffix",
    "s3_bucket_allow_list", "sqs_queue_name", "sqs_dead_letter_queue_name", "sqs_visibility_timeout_seconds",
    "sqs_wait_seconds", "sqs_max_receive_count", "bridge_max_backoff_seconds", "aws_region", "work_pool_name",
    "serving_port", "serving_workers", "serving_alias_check_seconds",
)


def child_env(settings: Settings) -> dict[str, str]:
    env = {}
    for name in _EXPORTED:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, bool):
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
    return services.mlflow_server(settings.home, settings.host, settings.mlflow_port, settings.mlflow_artifacts_destination)


def prefect(settings: Settings) -> Service:
    return services.prefect_server(settings.home, settings.host, settings.prefect_port)


def bridge(settings: Settings) -> Service:
    return services.s3_bridge(settings.home, settings.sqs_wait_seconds, child_env(settings))


def fork_server(settings: Settings) -> Service:
    env = {**services.prefect_env(settings.home, settings.resolved_prefect_api_url), **child_env(settings)}
    return services.fork_server(settings.home, settings.resolved_fork_server_socket, env)


def worker(settings: Settings) -> Service:
    # The deployments' flow-run command (prefect.yaml) asks the fork server at this socket for a warm process.
    env = {**child_env(settings), "LEANOPS_FORK_SERVER_SOCKET": str(settings.resolved_fork_server_socket)}
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
        startup_timeout=120.0,
        cwd=Path.cwd(),
    )


def endpoint_url(settings: Settings) -> str:
    return f"http://{settings.host}:{settings.serving_port}"


def all_services(settings: Settings) -> list[Service]:
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
        settings.s3_bucket, arn, settings.s3_incoming_prefix, settings.s3_incoming_suffix, settings
    )
    return url, dead_url


def ensure_work_pool(settings: Settings) -> bool:
    """Create the process work pool if missing; True if it was created."""
    api = settings.resolved_prefect_api_url
    try:
        with urllib.request.urlopen(f"{api}/work_pools/{settings.work_pool_name}", timeout=10):  # noqa: S310 - local API
            return False
    except urllib.error.HTTPError as exc:
        if exc.code != 404:
            raise
    env = {**os.environ, **services.prefect_env(settings.home, api)}
    subprocess.run(  # noqa: S603 - fixed argv
        [str(services.BIN / "prefect"), "work-pool", "create", settings.work_pool_name, "--type", "process"],
        env=env, check=True, capture_output=True, text=True, timeout=120,
    )
    return True


# --- commands --------------------------------------------------------------------------------------


def up(settings: Settings) -> None:
    home = settings.home
    home.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()

    def step(label: str, action) -> None:
        t0 = time.monotonic()
        action()
        print(f"  {label:<34} {time.monotonic() - t0:5.1f} s", flush=True)

    print(f"leanops stack: state in {home}")
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
    step("S3 event bridge", lambda: services.start(bridge(settings), home))
    step("Prefect worker", lambda: services.start(worker(settings), home))
    step("online endpoint", lambda: services.start(endpoint(settings), home))
    print(f"up in {time.monotonic() - started:.1f} s\n")
    status(settings)


def down(settings: Settings) -> None:
    for service in reversed(all_services(settings)):
        t0 = time.monotonic()
        was_running = services.stop(service, settings.home)
        outcome = f"stopped in {time.monotonic() - t0:.1f} s" if was_running else "was not running"
        print(f"  {service.name:<16} {outcome}", flush=True)


def describe(service: Service, settings: Settings) -> str:
    if service.name == "prefect-server":
        return f"UI http://{settings.host}:{settings.prefect_port}  API {settings.resolved_prefect_api_url}"
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
    args = parser.parse_args(argv)
    settings = get_settings()
    if args.command == "up":
        try:
            up(settings)
        except Exception as exc:  # noqa: BLE001 - one readable line; the log files hold the rest
            print(f"\nstack up failed: {exc}\n(`python -m infra.stack down` stops what started)", file=sys.stderr)
            return 1
        return 0
    if args.command == "down":
        down(settings)
        return 0
    return 0 if status(settings) else 1


if __name__ == "__main__":
    sys.exit(main())
