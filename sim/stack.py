"""The production profile for one simulation, as ``python -m infra.stack up --profile production`` starts it,
on databases, a Redis database and ports of its own (PostgreSQL and Redis are shared on this machine);
``down`` stops it and drops all of it."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from infra.production import claim_redis_database, operator_environment
from leanops.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
# Redis databases a simulation may claim (the stack's default is 11, the e2e tests take 12-15).
REDIS_DATABASES = range(5, 11)
CLAIM_KEY = "leanops-sim-claim"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def settings_for(run_id: str, home: Path) -> Settings:
    return Settings(
        profile="production", home=home, database_prefix=f"leanops_sim_{run_id}", redis_url=claim_redis_database(REDIS_DATABASES, CLAIM_KEY, run_id, hold_seconds=6 * 3600),
        database_templates=True, prefect_auth_string=f"ops:prefect-{secrets.token_hex(8)}", mlflow_password=f"mlflow-{secrets.token_hex(8)}",
        prefect_port=_free_port(), prefect_second_port=_free_port(), mlflow_port=_free_port(), s3_port=_free_port(),
        worker_health_port=_free_port(), worker_second_health_port=_free_port(),
        sqs_visibility_timeout_seconds=30, sqs_wait_seconds=2, bridge_max_backoff_seconds=2,
        mlflow_tracking_uri=None, prefect_api_url=None,
    )


def auth(settings: Settings) -> tuple[str, str]:
    user, password = settings.prefect_auth_string.get_secret_value().split(":", 1)
    return user, password


def up(settings: Settings, specs_dir: Path) -> None:
    from infra import stack

    with operator_environment(LEANOPS_SPECS_DIR=str(specs_dir), LEANOPS_SLACK_TOKEN=""):
        stack.up_production(settings)


DEPLOYMENT_NAMES = (
    "schedule/every-5-minutes", "retrain/on-schedule", "retrain/on-drift", "drift-monitor/on-new-batch",
    "promote/on-new-challenger", "rollback/manual", "rollback/on-degraded", "reconcile/hourly", "score/on-new-batch",
)
PAUSED_SCHEDULES = ("schedule/every-5-minutes", "reconcile/hourly")


def deploy(settings: Settings) -> dict[str, str]:
    """prefect.yaml deployed as is; the two real-time schedules paused (the simulator keeps the calendar)."""
    api = settings.prefect_api_urls[0]
    with operator_environment(PREFECT_API_AUTH_STRING=settings.prefect_auth_string.get_secret_value(),
                              PREFECT_HOME=str(settings.home / "deployer")):
        env = {**os.environ, "PREFECT_API_URL": api, "PREFECT_CLI_PROMPT": "false"}
    done = subprocess.run(  # noqa: S603 - fixed argv
        [str(Path(sys.executable).parent / "prefect"), "deploy", "--all", "--no-prompt", "--prefect-file", "prefect.yaml"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"prefect deploy failed: {(done.stdout + done.stderr)[-3000:]}")
    client = Api(settings)
    deployments = {name: client.get(f"/deployments/name/{name}").json()["id"] for name in DEPLOYMENT_NAMES}
    for name in PAUSED_SCHEDULES:
        for schedule in client.get(f"/deployments/{deployments[name]}").json()["schedules"]:
            client.patch(f"/deployments/{deployments[name]}/schedules/{schedule['id']}", {"active": False})
    return deployments


class Api:
    """Prefect's REST API (the first API process), with basic auth; times every call."""

    def __init__(self, settings: Settings, index: int = 0):
        self.url = settings.prefect_api_urls[index]
        self.client = httpx.Client(base_url=self.url, auth=auth(settings), timeout=60)

    def call(self, method: str, path: str, body=None) -> httpx.Response:
        for attempt in range(6):
            response = self.client.request(method, path, json=body)
            if response.status_code not in (429, 502, 503) or attempt == 5:
                break
            time.sleep(min(0.25 * 2**attempt, 4.0))
        response.raise_for_status()
        return response

    def get(self, path: str) -> httpx.Response:
        return self.call("GET", path)

    def post(self, path: str, body=None) -> httpx.Response:
        return self.call("POST", path, body)

    def patch(self, path: str, body=None) -> httpx.Response:
        return self.call("PATCH", path, body)


def down(settings: Settings) -> None:
    from concurrent.futures import ThreadPoolExecutor

    import redis

    from infra import production as layout
    from infra import services, stack

    with ThreadPoolExecutor() as pool:  # each waits out its own grace period: side by side
        list(pool.map(lambda service: services.stop(service, settings.home), stack.all_services(settings)))
    layout.drop_databases(settings)
    redis.Redis.from_url(settings.redis_url.get_secret_value()).flushdb()
