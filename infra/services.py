"""How the embedded services start and stop: Prefect server, MLflow tracking server, moto (S3 + SQS).

Each service runs in its own process group (``setsid``) so stopping it also stops its children,
with SIGKILL as a fallback: some servers ignore SIGTERM for tens of seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Service:
    name: str
    argv: list[str]
    health_url: str
    env: dict[str, str] = field(default_factory=dict)
    startup_timeout: float = 90.0

    def pid_file(self, home: Path) -> Path:
        return home / "run" / f"{self.name}.pid"

    def log_file(self, home: Path) -> Path:
        return home / "logs" / f"{self.name}.log"


def prefect_env(home: Path, api_url: str, database_url: str | None = None) -> dict[str, str]:
    """Environment for a local Prefect server and its clients, state kept under ``home``."""
    prefect_home = home / "prefect"
    env = {
        "PREFECT_HOME": str(prefect_home),
        "PREFECT_API_URL": api_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "true",
        "PREFECT_API_DATABASE_CONNECTION_URL": database_url or f"sqlite+aiosqlite:///{prefect_home / 'prefect.db'}",
        "PREFECT_LOGGING_LEVEL": "INFO",
    }
    return env


def prefect_server(home: Path, host: str, port: int, database_url: str | None = None) -> Service:
    api_url = f"http://{host}:{port}/api"
    return Service(
        name="prefect-server",
        argv=[str(BIN / "prefect"), "server", "start", "--host", host, "--port", str(port), "--no-services"]
        if os.environ.get("LEANOPS_PREFECT_NO_SERVICES") == "1"
        else [str(BIN / "prefect"), "server", "start", "--host", host, "--port", str(port)],
        health_url=f"{api_url}/health",
        env=prefect_env(home, api_url, database_url),
    )


def mlflow_server(home: Path, host: str, port: int, artifacts_destination: str | None = None, backend_uri: str | None = None) -> Service:
    backend = backend_uri or f"sqlite:///{home / 'mlflow' / 'mlflow.db'}"
    artifacts = artifacts_destination or str(home / "mlflow" / "artifacts")
    return Service(
        name="mlflow-server",
        argv=[
            str(BIN / "mlflow"), "server",
            "--backend-store-uri", backend,
            "--artifacts-destination", artifacts,
            "--host", host, "--port", str(port),
            "--workers", "2",
        ],
        health_url=f"http://{host}:{port}/health",
        env={"MLFLOW_ENABLE_WORKSPACES": "false"},
    )


def moto_server(host: str, port: int) -> Service:
    return Service(
        name="s3-endpoint",
        argv=[str(BIN / "moto_server"), "-H", host, "-p", str(port)],
        health_url=f"http://{host}:{port}/moto-api/",
        env={"AWS_ACCESS_KEY_ID": "leanops", "AWS_SECRET_ACCESS_KEY": "leanops", "AWS_DEFAULT_REGION": "us-east-1"},
    )


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - local health check
            return response.status < 500
    except Exception:  # noqa: BLE001 - not up yet
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_pid(service: Service, home: Path) -> int | None:
    pid_file = service.pid_file(home)
    if not pid_file.exists():
        return None
    pid = int(pid_file.read_text().strip() or 0)
    return pid if pid and _alive(pid) else None


def start(service: Service, home: Path, extra_env: dict[str, str] | None = None) -> int:
    """Start a service (or find it already running) and wait until its health URL answers."""
    existing = read_pid(service, home)
    if existing and _healthy(service.health_url):
        return existing
    if _healthy(service.health_url):
        raise RuntimeError(f"{service.name}: something else already answers at {service.health_url}")
    log_file = service.log_file(home)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    service.pid_file(home).parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **service.env, **(extra_env or {})}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    with log_file.open("ab") as log:
        process = subprocess.Popen(  # noqa: S603 - argv built from our own settings
            service.argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True, cwd=str(home)
        )
    service.pid_file(home).write_text(str(process.pid))
    deadline = time.monotonic() + service.startup_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log_file.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{service.name} exited with code {process.returncode} while starting; log tail:\n{tail}")
        if _healthy(service.health_url):
            return process.pid
        time.sleep(0.3)
    stop(service, home)
    raise RuntimeError(f"{service.name} did not answer at {service.health_url} within {service.startup_timeout:.0f} s")


def stop(service: Service, home: Path, grace: float = 10.0) -> bool:
    """Stop the service's whole process group: SIGTERM, then SIGKILL after ``grace`` seconds."""
    pid_file = service.pid_file(home)
    pid = read_pid(service, home)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return False
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _alive(pid):
        try:  # reap it if it is our child
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.2)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    pid_file.unlink(missing_ok=True)
    return True


def status(service: Service, home: Path) -> str:
    pid = read_pid(service, home)
    if pid is None:
        return "stopped"
    return "running" if _healthy(service.health_url) else "starting or unhealthy"
