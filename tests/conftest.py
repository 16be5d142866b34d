"""Shared fixtures. Three tiers: library units on small real data, task wiring, and end-to-end
flows against real local services (Prefect server, MLflow server, moto's S3 + SQS endpoint),
started once per test session on free ports with all state in a temp folder."""

from __future__ import annotations

import itertools
import os
import socket
import tempfile
from pathlib import Path

import pytest

# The fault-injection table's hooks (tests/reliability/table.py), here because every pytest process loads this file.
from reliability.table import pytest_runtest_logreport, pytest_terminal_summary  # noqa: F401


def _free_port() -> int:
    """A port from the kernel's ephemeral range, for a server a test starts and binds at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


SESSION_PORTS_BASE = 20_000
SESSION_PORTS_PER_WORKER = 1_000


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _session_ports(names: tuple[str, ...]) -> dict[str, int]:
    """Ports for the session's services, drawn now and bound minutes later, when a fixture first starts them.

    Not from the kernel's ephemeral range: every bind to port 0 draws from it (each test's own servers and
    proxies, every client socket), and under pytest-xdist another worker's test could be handed a port of
    this session in between and start its own server there. Then one of them talks to the other's server
    (seen as 500s from "another port" while a test dropped its server's database). Each xdist worker gets
    its own block below that range; the offset inside it follows the process id, so two sessions at once
    on one machine rarely meet, and a port that is taken now is skipped."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    low = SESSION_PORTS_BASE + SESSION_PORTS_PER_WORKER * int(worker.removeprefix("gw") or 0)
    ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    if low + SESSION_PORTS_PER_WORKER > ephemeral_low:
        raise RuntimeError(f"worker {worker}'s session ports {low}.. would reach the ephemeral range from {ephemeral_low}")
    start = os.getpid() % (SESSION_PORTS_PER_WORKER - 50)
    candidates = (low + (start + step) % SESSION_PORTS_PER_WORKER for step in range(SESSION_PORTS_PER_WORKER))
    ports = list(itertools.islice((port for port in candidates if _bindable(port)), len(names)))
    if len(ports) < len(names):
        raise RuntimeError(f"fewer than {len(names)} free ports in {low}..{low + SESSION_PORTS_PER_WORKER - 1}")
    return dict(zip(names, ports, strict=True))


# Environment is fixed before anything imports prefect or mlflow, so every client in this
# process (and every subprocess) talks to this session's services and keeps state in HOME.
HOME = Path(tempfile.mkdtemp(prefix="leanops-tests-"))
PORTS = _session_ports(("prefect", "mlflow", "s3", "worker"))
_ENV = {
    "LEANOPS_HOME": str(HOME),
    "LEANOPS_PREFECT_PORT": str(PORTS["prefect"]),
    "LEANOPS_MLFLOW_PORT": str(PORTS["mlflow"]),
    "LEANOPS_S3_PORT": str(PORTS["s3"]),
    "LEANOPS_WORKER_HEALTH_PORT": str(PORTS["worker"]),
    # Short SQS timings: an unacknowledged message reappears after 3 s, a poll returns within 2 s.
    "LEANOPS_SQS_VISIBILITY_TIMEOUT_SECONDS": "3",
    "LEANOPS_SQS_WAIT_SECONDS": "2",
    "LEANOPS_BRIDGE_MAX_BACKOFF_SECONDS": "2",
    "LEANOPS_SLACK_TOKEN": "",
    "PREFECT_API_URL": f"http://127.0.0.1:{PORTS['prefect']}/api",
    "PREFECT_HOME": str(HOME / "prefect"),
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_LOGGING_TO_API_BATCH_INTERVAL": "0.3",
    "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "true",
    # A run refused by a deployment's concurrency limit (ENQUEUE) is retried after this, not 30 s.
    "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS": "5",
    "PREFECT_LOCAL_STORAGE_PATH": str(HOME / "prefect-results"),
    # Flow runs beat every 30 s (Prefect's minimum; default 180): the zombie-run automation the session's
    # server gets (deployments/zombie_runs.py) then marks a killed run Crashed ~90 s after its last beat.
    "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30",
    "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{PORTS['mlflow']}",
    "AWS_ACCESS_KEY_ID": "leanops",
    "AWS_SECRET_ACCESS_KEY": "leanops",
    "AWS_DEFAULT_REGION": "us-east-1",
    "GIT_PYTHON_REFRESH": "quiet",
}
os.environ.update(_ENV)
os.environ.pop("LEANOPS_SLACK_TOKEN")


# On pytest-xdist workers (`pytest -n 2 --dist loadfile`) each worker has its own ports (above) and home,
# so each has its own session stack, and a module stays on one worker; the modules that start
# PostgreSQL-backed stacks take a lock shared by every process of the machine, so they run one after another.
POSTGRES_MODULES = {"test_production.py", "test_scale_out.py", "test_secret_leak.py", "test_backup_restore.py"}


@pytest.fixture(scope="module", autouse=True)
def _one_postgres_module_at_a_time(request):
    if request.path.name not in POSTGRES_MODULES:
        yield
        return
    import fcntl

    with open(Path(tempfile.gettempdir()) / "leanops-tests-postgres.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@pytest.fixture(scope="session")
def settings():
    from leanops.settings import get_settings, reset_settings_cache

    reset_settings_cache()
    return get_settings()


@pytest.fixture(scope="session")
def s3_endpoint(settings):
    """moto's server: a real S3 + SQS HTTP endpoint on 127.0.0.1."""
    from infra import services

    service = services.moto_server(settings.host, settings.s3_port)
    services.start(service, HOME)
    yield settings.resolved_s3_endpoint_url
    services.stop(service, HOME)


@pytest.fixture(scope="session")
def mlflow_server(settings):
    """A real MLflow tracking server (SQLite backend, local artifacts)."""
    from infra import services

    service = services.mlflow_server(HOME, settings.host, settings.mlflow_port)
    services.start(service, HOME)
    yield settings.resolved_mlflow_tracking_uri
    services.stop(service, HOME)


@pytest.fixture(scope="session")
def prefect_server(settings):
    """A real Prefect server (SQLite) for the whole session, with the stack's zombie-run automation."""
    from infra import services, stack

    service = services.prefect_server(HOME, settings.host, settings.prefect_port)
    services.start(service, HOME)
    stack.ensure_zombie_run_automation(settings)
    yield settings.resolved_prefect_api_url
    # Send the logs still buffered while the server is up: at exit, Prefect's log worker would retry
    # a stopped server for about a minute.
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)
    services.stop(service, HOME)


@pytest.fixture(scope="session")
def s3_bridge(s3_endpoint, prefect_server, settings):
    """Bucket, queue + dead-letter queue, notification, and the S3 -> Prefect events bridge running.

    Yields (queue url, dead-letter queue url)."""
    from infra import services, stack

    queues = stack.provision_s3(settings)
    service = stack.bridge(settings)
    services.start(service, HOME)
    yield queues
    services.stop(service, HOME)


@pytest.fixture(scope="session")
def fork_server(prefect_server, settings):
    """The fork server a worker started by ``infra.stack.worker`` sends its flow runs to. Yields its log file."""
    from infra import services, stack

    service = stack.fork_server(settings)
    services.start(service, HOME)
    yield service.log_file(HOME)
    services.stop(service, HOME)


@pytest.fixture(scope="session")
def stack(s3_endpoint, mlflow_server, prefect_server, s3_bridge, settings):
    """Every service of the local stack but the worker: objects put under the incoming prefix become
    leanops.batch.landed events."""
    return settings


@pytest.fixture(scope="session")
def spec():
    from leanops.spec import load_spec

    return load_spec(Path(__file__).resolve().parent.parent / "specs" / "flights-delay.yaml")


@pytest.fixture(scope="session")
def flights_small():
    """4,800 real flights of January-June 2013 (800 a month), in time order."""
    from leanops import datasets

    return datasets.flights_sample(range(1, 7), rows_per_month=800, seed=1)


@pytest.fixture(scope="session")
def flights_july():
    from leanops import datasets

    return datasets.flights_sample([7], rows_per_month=2000, seed=2)


@pytest.fixture
def slack():
    """A real HTTP server on 127.0.0.1 standing in for Slack's Web API (tests/fake_slack.py)."""
    from fake_slack import FakeSlack

    fake = FakeSlack()
    yield fake
    fake.close()


# --- prefect.yaml deployed, and a worker running its runs (one of each per module that asks) -----------


@pytest.fixture(scope="module")
def deployment_names():
    """The deployments of prefect.yaml a module deploys (default: all; a module needing a few overrides this)."""
    from support import DEPLOYMENT_NAMES

    return DEPLOYMENT_NAMES


@pytest.fixture(scope="module")
def deployed(stack, deployment_names, settings):
    """`prefect deploy` of the module's deployments (default `--all`) from the project root; yields
    {"flow/deployment": id}. The two schedules are switched off (their runs would start reconciliations and
    scheduler passes mid-test); teardown deletes the deployments and their automations, so nothing outlives the module."""
    from infra.stack import ensure_work_pool
    from support import deploy_prefect_yaml, prefect_request

    api = settings.resolved_prefect_api_url
    ensure_work_pool(settings)
    ids = deploy_prefect_yaml(api, dict(os.environ), deployment_names)
    yield ids
    for deployment_id in ids.values():
        prefect_request("DELETE", f"{api}/automations/owned-by/prefect.deployment.{deployment_id}")
        prefect_request("DELETE", f"{api}/deployments/{deployment_id}")


@pytest.fixture(scope="module")
def worker_env():
    """More environment for the module's worker, and so for every flow run it starts (a module overrides this)."""
    return {}


@pytest.fixture(scope="module")
def paused_triggers():
    """Deployments whose triggers the module's worker switches off first (a module overrides this)."""
    return {"promote/on-new-challenger", "rollback/on-degraded"}


@pytest.fixture(scope="module")
def worker(deployed, specs_dir, fork_server, worker_env, paused_triggers, settings):
    """A real process worker on leanops-pool (1 s polls) starting runs through the fork server, finding
    specs by name in the module's own ``specs_dir`` fixture.

    Promotion and rollback triggers are switched off first (``paused_triggers``): each model these tests
    register would otherwise start a promote run (their own tests cover them), costing a minute of a shared CPU."""
    from infra import services, stack
    from support import api_call, automations_of

    api = settings.resolved_prefect_api_url
    for name in paused_triggers & deployed.keys():
        for automation in automations_of(api, deployed[name]):
            api_call(api, "PATCH", f"/automations/{automation['id']}", {"enabled": False})
    service = stack.worker(settings)
    services.start(service, settings.home, extra_env={"LEANOPS_SPECS_DIR": str(specs_dir), **worker_env})
    yield service
    services.stop(service, settings.home)
