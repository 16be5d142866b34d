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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from leanops.settings import LOCAL_AWS_CREDENTIALS

BIN = Path(sys.executable).parent
LOCAL_AWS_ENV = {**LOCAL_AWS_CREDENTIALS, "AWS_DEFAULT_REGION": "us-east-1"}

# What a server (moto, MLflow, Prefect) takes from the environment of whoever starts it: where things are,
# the locale, and nothing else. A server gets the rest explicitly (Service.env), so a Slack token, AWS keys
# or database passwords in the operator's shell never reach a process that has no use for them.
PASSED_TO_SERVERS = (
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "PYTHONPATH", "LD_LIBRARY_PATH",
    "SSL_CERT_FILE", "SSL_CERT_DIR",
)
PASSED_TO_SERVERS_PREFIXES = ("LC_",)
# The AWS variables a process signing S3 requests with the operator's identity reads (keys, session, profile).
AWS_IDENTITY = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CA_BUNDLE",
)


@dataclass(frozen=True)
class Service:
    name: str
    argv: list[str]
    health_url: str
    env: dict[str, str] = field(default_factory=dict)
    startup_timeout: float = 90.0
    # Services without an HTTP endpoint prove they work by touching this file (e.g. after each poll).
    heartbeat_file: Path | None = None
    heartbeat_max_age: float = 60.0
    # Services with neither prove they started by writing this line to their log (then: alive = healthy).
    ready_log: str | None = None
    # What the log line cannot show, asked of the systems the service uses once the line is there: named
    # in the error of a start that times out. Without one, alive = healthy.
    ready_check: Callable[[], bool] | None = None
    ready_check_name: str = ""
    stop_grace: float = 10.0
    # Default: the state folder. Services that run project code (specs, flows) start in the folder the
    # stack was started from: the project, wherever leanops itself is installed.
    cwd: Path | None = None
    # False (servers): only PASSED_TO_SERVERS of the starter's environment, plus ``env`` and the variables
    # named by ``passed_prefixes`` (the server's own configuration namespace). True: the whole environment,
    # for the processes that run flows or call services (worker, fork server, bridge, endpoint): they
    # need the credentials of what they call (Slack, S3, MLflow, Prefect), and a flow may need more.
    inherits_environment: bool = False
    passed_prefixes: tuple[str, ...] = ()

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


# The Prefect server's own settings an operator (or the tests) may set in the environment: PREFECT_SERVER_*.
PREFECT_SERVER_CONFIGURATION = ("PREFECT_SERVER_",)


def prefect_server(home: Path, host: str, port: int, database_url: str | None = None) -> Service:
    api_url = f"http://{host}:{port}/api"
    # Events reach /api/events/filter and the UI feed when persisted: every 1 s instead of 5 s.
    # (Triggers read the event stream directly and do not wait for this.)
    env = {**prefect_env(home, api_url, database_url), "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_FLUSH_INTERVAL": "1"}
    return Service(
        name="prefect-server",
        argv=[str(BIN / "prefect"), "server", "start", "--host", host, "--port", str(port), "--no-services"]
        if os.environ.get("LEANOPS_PREFECT_NO_SERVICES") == "1"
        else [str(BIN / "prefect"), "server", "start", "--host", host, "--port", str(port)],
        health_url=f"{api_url}/health",
        env=env,
        passed_prefixes=PREFECT_SERVER_CONFIGURATION,
        # ~9 s on a fresh SQLite database when idle; over 90 s seen here with a load average of 15.
        startup_timeout=240.0,
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
            "--workers", "1",
        ],
        health_url=f"http://{host}:{port}/health",
        # First start migrates a fresh SQLite database: ~18 s idle, several times that on a busy machine.
        startup_timeout=240.0,
        # MLflow 3 also starts a job runner and two task queues (GenAI jobs); leanops uses none of them.
        env={"MLFLOW_ENABLE_WORKSPACES": "false", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )


def moto_server(host: str, port: int) -> Service:
    return Service(
        name="s3-endpoint",
        argv=[str(BIN / "moto_server"), "-H", host, "-p", str(port)],
        health_url=f"http://{host}:{port}/moto-api/",
        env=dict(LOCAL_AWS_ENV),
    )


def s3_bridge(home: Path, wait_seconds: float, env: dict[str, str] | None = None) -> Service:
    """The SQS -> Prefect events relay (deployments/s3_bridge.py); healthy while it keeps polling."""
    heartbeat = home / "run" / "s3-bridge.heartbeat"
    return Service(
        name="s3-bridge",
        argv=[str(BIN / "python"), "-m", "deployments.s3_bridge", "--heartbeat", str(heartbeat)],
        health_url="",
        env=dict(env or {}),
        inherits_environment=True,  # SQS (AWS credentials) and Prefect (its auth)
        startup_timeout=60.0,
        heartbeat_file=heartbeat,
        # A poll returns at least every wait_seconds; allow for a few slow ones and SQS backoff.
        heartbeat_max_age=3 * wait_seconds + 30,
    )


def fork_server(home: Path, socket_path: Path, env: dict[str, str] | None = None) -> Service:
    """Forks warm flow-run processes for the worker (deployments/forkserver.py); healthy while serving."""
    heartbeat = home / "run" / "fork-server.heartbeat"
    return Service(
        name="fork-server",
        argv=[str(BIN / "python"), "-m", "deployments.forkserver", "--socket", str(socket_path), "--heartbeat", str(heartbeat)],
        health_url="",
        env=dict(env or {}),
        inherits_environment=True,  # its children are flow runs (each also gets its own run's environment)
        # Preloading imports Prefect, pandas, sklearn, MLflow, Evidently...: ~10 s idle, more under load.
        startup_timeout=180.0,
        heartbeat_file=heartbeat,
        heartbeat_max_age=30.0,
        # It stops its running children first (SIGTERM, 10 s grace), as a stopped worker would.
        stop_grace=15.0,
        cwd=Path.cwd(),
    )


def prefect_worker(home: Path, api_url: str, pool: str, host: str, health_port: int, env: dict[str, str] | None = None) -> Service:
    """A process worker polling ``pool``; runs flow code from the project root (relative entrypoints)."""
    return Service(
        name="prefect-worker",
        # Started again whenever it exits: it gives up after ~20 s without its server (infra/respawn.py).
        argv=[
            str(BIN / "python"), "-m", "infra.respawn", "--", str(BIN / "prefect"), "worker", "start",
            "--pool", pool, "--type", "process", "--name", f"leanops-worker-{health_port}", "--with-healthcheck",
        ],
        health_url=f"http://{host}:{health_port}/health",
        env={
            **prefect_env(home, api_url),
            # Created -> Running in ~3 s instead of 7-14 s (field notes).
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "PREFECT_RUNNER_POLL_FREQUENCY": "1",
            "PREFECT_WORKER_WEBSERVER_HOST": host,
            "PREFECT_WORKER_WEBSERVER_PORT": str(health_port),
            **(env or {}),
        },
        inherits_environment=True,  # its flow runs call Slack, S3, MLflow and Prefect with their credentials
        # It ignores SIGTERM for 20-30 s: do not wait that long before SIGKILL.
        stop_grace=3.0,
        cwd=Path.cwd(),
    )


def server_process_env(extra: dict[str, str], passed_prefixes: tuple[str, ...] = (), parent: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a server or of a one-off server command (e.g. a migration): PASSED_TO_SERVERS of
    ``parent`` (default: ours), its variables starting with ``passed_prefixes``, ``extra``, the venv's bin first."""
    parent = os.environ if parent is None else parent
    prefixes = PASSED_TO_SERVERS_PREFIXES + tuple(passed_prefixes)
    env = {key: value for key, value in parent.items() if key in PASSED_TO_SERVERS or key.startswith(prefixes)}
    env.update(extra)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def process_env(service: Service, extra_env: dict[str, str] | None = None, parent: dict[str, str] | None = None) -> dict[str, str]:
    """The whole environment ``start`` gives ``service``'s process (see Service.inherits_environment)."""
    parent = os.environ if parent is None else parent
    if not service.inherits_environment:
        return server_process_env({**service.env, **(extra_env or {})}, service.passed_prefixes, parent)
    env = {**parent, **service.env, **(extra_env or {})}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def s3_client_env(settings) -> dict[str, str]:
    """What a non-leanops S3 client (MLflow's artifact proxy) needs to reach the configured object store:
    the local endpoint's placeholder credentials, or the starter's AWS identity for real S3."""
    env = {"AWS_DEFAULT_REGION": settings.aws_region}
    if settings.resolved_s3_endpoint_url:
        env["MLFLOW_S3_ENDPOINT_URL"] = settings.resolved_s3_endpoint_url
    if settings.uses_local_s3:
        env.update(LOCAL_AWS_CREDENTIALS)  # moto takes any: the operator's real keys have no business there
    else:
        env.update({key: os.environ[key] for key in AWS_IDENTITY if key in os.environ})
    return env


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - local health check
            return response.status < 500
    except Exception:  # noqa: BLE001 - not up yet
        return False


def is_healthy(service: Service, since: float | None = None) -> bool:
    """Health URL answers, or the heartbeat file is fresh (and, with ``since``, newer than that time)."""
    if service.ready_log is not None:
        # The log line is checked by start(); afterwards, alive (and the ready check) is all it can show.
        return service.ready_check is None or service.ready_check()
    if service.heartbeat_file is None:
        return _healthy(service.health_url)
    try:
        mtime = service.heartbeat_file.stat().st_mtime
    except FileNotFoundError:
        return False
    if since is not None and mtime < since:
        return False
    return time.time() - mtime <= service.heartbeat_max_age


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie has exited: only its parent (init, once `up` has gone) has not reaped it yet
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def read_pid(service: Service, home: Path) -> int | None:
    pid_file = service.pid_file(home)
    if not pid_file.exists():
        return None
    pid = int(pid_file.read_text().strip() or 0)
    return pid if pid and process_alive(pid) else None


def start(service: Service, home: Path, extra_env: dict[str, str] | None = None) -> int:
    """Start a service (or find it already running) and wait until its health URL answers."""
    existing = read_pid(service, home)
    if existing:
        if is_healthy(service):
            return existing
        stop(service, home)  # ours but not healthy: restart it rather than start a twin
    if service.heartbeat_file is None and service.health_url and _healthy(service.health_url):
        raise RuntimeError(f"{service.name}: something else already answers at {service.health_url}")
    log_file = service.log_file(home)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    # 0700: <home>/run also holds the fork server's socket, which only this user may reach (the server
    # tightens an older, looser one itself).
    service.pid_file(home).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    env = process_env(service, extra_env)
    launched = time.time()
    log_offset = log_file.stat().st_size if log_file.exists() else 0
    with log_file.open("ab") as log:
        process = subprocess.Popen(  # noqa: S603 - argv built from our own settings
            service.argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True, cwd=str(service.cwd or home)
        )
    service.pid_file(home).write_text(str(process.pid))
    deadline = time.monotonic() + service.startup_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log_file.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{service.name} exited with code {process.returncode} while starting; log tail:\n{tail}")
        if service.ready_log is not None:
            with log_file.open("rb") as log:
                log.seek(log_offset)
                logged = service.ready_log.encode() in log.read()
            if logged and is_healthy(service):
                return process.pid
        elif is_healthy(service, since=launched):
            return process.pid
        time.sleep(0.3)
    stop(service, home)
    probe = service.heartbeat_file or service.health_url or f"its log ({service.ready_log!r})" + (
        f" and {service.ready_check_name}" if service.ready_check else "")
    raise RuntimeError(f"{service.name} did not answer at {probe} within {service.startup_timeout:.0f} s")


def stop(service: Service, home: Path, grace: float | None = None) -> bool:
    """Stop the service's whole process group: SIGTERM, then SIGKILL after ``grace`` seconds."""
    grace = service.stop_grace if grace is None else grace
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
    while time.monotonic() < deadline and process_alive(pid):
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
    return "running" if is_healthy(service) else "starting or unhealthy"
