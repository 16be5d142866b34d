"""The production layout on one machine: ``python -m infra.stack up --profile production``.

The shape of Prefect's self-hosted scaling guide, with every piece a team would run on its own machines:

- PostgreSQL databases ``<prefix>_prefect``, ``_mlflow``, ``_mlflow_auth`` and ``_optuna`` (created here,
  dropped by ``down --drop-data``); Redis (our own database index) as Prefect's messaging broker and
  cache, causal ordering, concurrency lease storage and Docket;
- Prefect's migrations run once (``prefect server database upgrade``), then two API processes with
  ``--no-services`` on two ports and the background services once, in their own process
  (``python -m infra.prefect_services``: Prefect's services, each started again if it ends). A load balancer would sit in front of the two APIs; there is
  none here, so worker A and the S3 bridge talk to the first and worker B to the second;
- MLflow's tracking server on PostgreSQL with its basic-auth app, artifacts in S3 behind its
  artifact proxy (clients need no S3 rights for artifacts);
- two process workers, each with its own Prefect home, leanops home and fork server, as if on two
  machines. Both poll the pool's default queue; each also polls a queue of its own (``worker-a``,
  ``worker-b``) for runs that must land on that machine.

Task results and cache records go to an ``s3-bucket`` block (prefect-aws) in the object store, alert
state to ``s3://<bucket>/state/``: nothing a later run needs stays on one worker's disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import os
import secrets
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from infra import prefect_services as prefect_services_module
from infra import services, triggers_ready
from infra.services import Service
from leanops.settings import Settings

WORKERS = ("a", "b")
# Several servers start side by side on a machine that may be busy: an API's first answer took 60-120 s
# here under a load of 15 (5 s idle).
STARTUP_TIMEOUT = 600.0
DATABASES = ("prefect", "mlflow", "mlflow_auth", "optuna")


def claim_redis_database(indexes: range, claim_key: str, owner: str, hold_seconds: int) -> str:
    """A Redis database index on 127.0.0.1:6379 nobody uses now (Redis is shared on this machine): a claim
    key set only where the database is empty, held ``hold_seconds``. Prefect's streams and consumer groups
    have fixed names, so two stacks must never share a database."""
    import redis

    for index in indexes:
        client = redis.Redis(host="127.0.0.1", port=6379, db=index)
        if client.dbsize() == 0 and client.set(claim_key, owner, nx=True, ex=hold_seconds) and client.dbsize() == 1:
            return f"redis://127.0.0.1:6379/{index}"
    raise RuntimeError(f"no free Redis database among {list(indexes)} on 127.0.0.1:6379")


@contextlib.contextmanager
def operator_environment(**values: str):
    """The environment of an operator's shell starting the stack: none of the caller's PREFECT_*, LEANOPS_*
    or MLFLOW_* variables (in a test session they point at its embedded servers), plus ``values``."""
    saved = dict(os.environ)
    for name in list(os.environ):
        if name.startswith(("PREFECT_", "LEANOPS_", "MLFLOW_")):
            del os.environ[name]
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def missing_secrets(settings: Settings) -> list[str]:
    missing = []
    if not settings.prefect_auth_string:
        missing.append("LEANOPS_PREFECT_AUTH_STRING (user:password of Prefect's basic auth)")
    if not settings.mlflow_password:
        missing.append("LEANOPS_MLFLOW_PASSWORD (MLflow's admin password)")
    return missing


# --- PostgreSQL and Redis ------------------------------------------------------------------------------


def _admin(settings: Settings, statements: list[str]) -> None:
    import asyncpg

    async def run() -> None:
        connection = await asyncpg.connect(settings.named_database_url("postgres"))
        try:
            for statement in statements:
                await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(run())


def _existing_databases(settings: Settings) -> set[str]:
    import asyncpg

    async def existing() -> set[str]:
        connection = await asyncpg.connect(settings.named_database_url("postgres"))
        try:
            return {row["datname"] for row in await connection.fetch("SELECT datname FROM pg_database")}
        finally:
            await connection.close()

    return asyncio.run(existing())


# The databases whose migrations settings.database_templates saves (MLflow's auth store is a few tables).
TEMPLATED = ("prefect", "mlflow")


def template_name(purpose: str) -> str:
    """The migrated empty template of ``purpose`` for the installed Prefect and MLflow versions."""
    from importlib.metadata import version

    digest = hashlib.sha256(f"prefect {version('prefect')} mlflow {version('mlflow')}".encode()).hexdigest()[:10]
    return f"leanops_template_{purpose}_{digest}"


def _migrate_template(settings: Settings, purpose: str) -> None:
    """Build ``purpose``'s template under a name of its own, then rename it into place (two starters
    racing both build one; the loser drops its copy)."""
    building = f"{template_name(purpose)}_build_{secrets.token_hex(4)}"
    _admin(settings, [f'CREATE DATABASE "{building}"'])
    try:
        if purpose == "prefect":
            migrate(settings, settings.named_database_url(building, "postgresql+asyncpg"))
        else:
            _run([str(services.BIN / "mlflow"), "db", "upgrade", settings.named_database_url(building)], {}, "mlflow db upgrade")
        _admin(settings, [f'ALTER DATABASE "{building}" RENAME TO "{template_name(purpose)}"'])
    except Exception:
        _admin(settings, [f'DROP DATABASE IF EXISTS "{building}" WITH (FORCE)'])
        if template_name(purpose) not in _existing_databases(settings):
            raise


def ensure_databases(settings: Settings) -> list[str]:
    """Create the profile's databases that do not exist yet; returns the ones created. With
    settings.database_templates, the Prefect and MLflow ones are copies of migrated templates."""
    existing = _existing_databases(settings)
    missing = [p for p in DATABASES if settings.database_name(p) not in existing]
    templated = [p for p in missing if settings.database_templates and p in TEMPLATED]
    unbuilt = [p for p in templated if template_name(p) not in existing]
    with ThreadPoolExecutor() as pool:
        list(pool.map(lambda purpose: _migrate_template(settings, purpose), unbuilt))
    _admin(settings, [
        f'CREATE DATABASE "{settings.database_name(p)}"' + (f' TEMPLATE "{template_name(p)}"' if p in templated else "")
        for p in missing
    ])
    return [settings.database_name(p) for p in missing]


def needs_migration(settings: Settings, created: list[str]) -> bool:
    """Prefect's database needs `prefect server database upgrade` unless it was just copied from its template."""
    return not (settings.database_templates and settings.database_name("prefect") in created)


def drop_databases(settings: Settings) -> None:
    _admin(settings, [f'DROP DATABASE IF EXISTS "{settings.database_name(p)}" WITH (FORCE)' for p in DATABASES])


def redis_env(settings: Settings) -> dict[str, str]:
    """Prefect's server-side messaging, ordering, leases and Docket on Redis (prefect-redis)."""
    url = settings.redis_url.get_secret_value()
    return {
        "PREFECT_MESSAGING_BROKER": "prefect_redis.messaging",
        "PREFECT_MESSAGING_CACHE": "prefect_redis.messaging",
        "PREFECT_SERVER_EVENTS_CAUSAL_ORDERING": "prefect_redis.ordering",
        "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "prefect_redis.lease_storage",
        "PREFECT_REDIS_MESSAGING_URL": url,
        "PREFECT_SERVER_DOCKET_URL": url,
    }


# --- Prefect ---------------------------------------------------------------------------------------------


def server_env(settings: Settings) -> dict[str, str]:
    """What every Prefect server process (migration, APIs, services) shares."""
    env = {
        **services.prefect_env(settings.home, settings.resolved_prefect_api_url, settings.database_url("prefect", "postgresql+asyncpg")),
        **redis_env(settings),
        "PREFECT_API_DATABASE_MIGRATE_ON_START": "false",
        "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_FLUSH_INTERVAL": "1",
    }
    if settings.prefect_auth_string:
        env["PREFECT_SERVER_API_AUTH_STRING"] = settings.prefect_auth_string.get_secret_value()
        env["PREFECT_API_AUTH_STRING"] = env["PREFECT_SERVER_API_AUTH_STRING"]
    return env


def _run(argv: list[str], env: dict[str, str], what: str) -> None:
    done = subprocess.run(  # noqa: S603 - fixed argv
        argv, env=services.server_process_env(env, services.PREFECT_SERVER_CONFIGURATION), capture_output=True, text=True, timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed: {(done.stdout + done.stderr)[-2000:]}")


def migrate(settings: Settings, database_url: str | None = None) -> None:
    """Prefect's database migrations, once, before any API process starts (``database_url``: another database)."""
    env = server_env(settings)
    if database_url:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url
    _run([str(services.BIN / "prefect"), "server", "database", "upgrade", "-y"], env, "prefect server database upgrade")


def api_port(settings: Settings, index: int) -> int:
    return (settings.prefect_port, settings.prefect_second_port)[index]


def prefect_api(settings: Settings, index: int) -> Service:
    port = api_port(settings, index)
    return Service(
        name=f"prefect-api-{WORKERS[index]}",
        argv=[str(services.BIN / "prefect"), "server", "start", "--host", settings.host, "--port", str(port), "--no-services"],
        health_url=f"http://{settings.host}:{port}/api/health",
        env=server_env(settings),
        passed_prefixes=services.PREFECT_SERVER_CONFIGURATION,
        startup_timeout=STARTUP_TIMEOUT,
    )


def prefect_services(settings: Settings) -> Service:
    """The background services (infra.prefect_services: Prefect's, each started again if it ends), started
    once their triggers service is ready: the stack creates the work pool only after this returns, and a
    team deploys only after that."""
    return Service(
        name="prefect-services",
        argv=[str(services.BIN / "python"), "-m", "infra.prefect_services"],
        health_url="",
        env=server_env(settings),
        passed_prefixes=services.PREFECT_SERVER_CONFIGURATION,
        # Printed before any service starts: the checks below are what say the triggers are ready.
        ready_log=prefect_services_module.READY_LOG,
        ready_check=lambda: triggers_are_ready(settings),
        ready_check_name=(
            f"a LISTEN on {triggers_ready.AUTOMATION_CHANGES_CHANNEL} in {settings.database_name('prefect')} and "
            f"a {triggers_ready.TRIGGERS_GROUP} group on Redis' {triggers_ready.EVENTS_STREAM} stream"
        ),
        startup_timeout=STARTUP_TIMEOUT,
    )


def triggers_are_ready(settings: Settings) -> bool:
    """Whether Prefect's triggers service listens for automation changes and consumes events
    (infra.triggers_ready says why nothing may create an automation before)."""
    return listens_for_automation_changes(settings) and triggers_consume_events(settings)


def triggers_consume_events(settings: Settings) -> bool:
    import redis

    try:
        return triggers_ready.consuming(redis.Redis.from_url(settings.redis_url.get_secret_value()))
    except redis.ConnectionError:
        return False  # Redis not answering yet is "not yet", as for PostgreSQL below


def listens_for_automation_changes(settings: Settings) -> bool:
    import asyncpg

    async def ask() -> bool:
        connection = await asyncpg.connect(settings.named_database_url(settings.database_name("prefect")))
        try:
            return await triggers_ready.listening(connection)
        finally:
            await connection.close()

    try:
        return asyncio.run(ask())
    except (OSError, asyncpg.PostgresError):
        return False  # PostgreSQL not answering yet is "not yet": start() reports the timeout with the check's name


# --- MLflow ----------------------------------------------------------------------------------------------


def mlflow_auth_config(settings: Settings) -> Path:
    """MLflow's basic-auth config: its user store on PostgreSQL; nobody may read without an account."""
    path = settings.home / "mlflow" / "basic_auth.ini"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "[mlflow]\n"
        "default_permission = NO_PERMISSIONS\n"
        f"database_uri = {settings.database_url('mlflow_auth').replace('%', '%%')}\n"
        f"admin_username = {settings.mlflow_username}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        f"auth_cache_ttl_seconds = {settings.mlflow_auth_cache_seconds}\n"
    )
    path.chmod(0o600)  # the database URL may carry a password
    return path


def mlflow(settings: Settings) -> Service:
    base = services.mlflow_server(
        settings.home, settings.host, settings.mlflow_port,
        settings.resolved_mlflow_artifacts_destination, settings.database_url("mlflow"),
    )
    secret = settings.mlflow_flask_secret_key.get_secret_value() if settings.mlflow_flask_secret_key else secrets.token_hex(32)
    env = {
        **base.env,
        "MLFLOW_AUTH_CONFIG_PATH": str(settings.home / "mlflow" / "basic_auth.ini"),
        "MLFLOW_AUTH_ADMIN_USERNAME": settings.mlflow_username,
        "MLFLOW_AUTH_ADMIN_PASSWORD": settings.mlflow_password.get_secret_value() if settings.mlflow_password else "",
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secret,
        **services.s3_client_env(settings),
    }
    return dataclasses.replace(base, argv=[*base.argv, "--app-name", "basic-auth"], env=env, startup_timeout=STARTUP_TIMEOUT)


# --- workers ---------------------------------------------------------------------------------------------


def worker_home(settings: Settings, index: int) -> Path:
    """A worker's own folders (Prefect home, leanops home, fork server socket), as on its own machine."""
    return settings.home / f"worker-{WORKERS[index]}"


def worker_queue(index: int) -> str:
    return f"worker-{WORKERS[index]}"


def worker_env(settings: Settings, index: int, exported: dict[str, str]) -> dict[str, str]:
    home = worker_home(settings, index)
    api = settings.prefect_api_urls[index % len(settings.prefect_api_urls)]
    return {
        **services.prefect_env(home, api),
        **exported,
        **settings.prefect_client_env(api),
        **settings.mlflow_client_env(),
        "MLFLOW_TRACKING_URI": settings.resolved_mlflow_tracking_uri,
        "LEANOPS_HOME": str(home),
        "LEANOPS_FORK_SERVER_SOCKET": str(home / "run" / "forkserver.sock"),
    }


def fork_server(settings: Settings, index: int, exported: dict[str, str]) -> Service:
    home = worker_home(settings, index)
    base = services.fork_server(home, home / "run" / "forkserver.sock", worker_env(settings, index, exported))
    return dataclasses.replace(base, name=f"fork-server-{WORKERS[index]}", startup_timeout=STARTUP_TIMEOUT)


def worker(settings: Settings, index: int, exported: dict[str, str]) -> Service:
    home = worker_home(settings, index)
    env = worker_env(settings, index, exported)
    port = (settings.worker_health_port, settings.worker_second_health_port)[index]
    base = services.prefect_worker(home, env["PREFECT_API_URL"], settings.work_pool_name, settings.host, port, env)
    queues = ["--work-queue", "default", "--work-queue", worker_queue(index)]
    return dataclasses.replace(
        base, name=f"prefect-worker-{WORKERS[index]}", argv=[*base.argv, *queues], startup_timeout=STARTUP_TIMEOUT
    )


def bridge(settings: Settings, exported: dict[str, str]) -> Service:
    base = services.s3_bridge(settings.home, settings.sqs_wait_seconds, exported)
    return dataclasses.replace(
        base, env={**base.env, **settings.prefect_client_env(settings.prefect_api_urls[0])}, startup_timeout=STARTUP_TIMEOUT
    )


# --- object store ----------------------------------------------------------------------------------------


def ensure_result_storage(settings: Settings) -> str | None:
    """The s3-bucket block every worker keeps task results and cache records in; None for a local folder."""
    if not settings.result_storage_is_block:
        return None
    import os

    from prefect.settings import temporary_settings
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL
    from prefect_aws import AwsCredentials, S3Bucket

    block_type, name = settings.resolved_result_storage.split("/")
    if block_type != "s3-bucket":
        raise ValueError(f"result_storage {settings.resolved_result_storage!r}: the stack creates s3-bucket blocks only")
    client_parameters = {"endpoint_url": settings.resolved_s3_endpoint_url} if settings.resolved_s3_endpoint_url else {}
    # No keys in the block: each process signs with its own AWS credentials (environment, role).
    block = S3Bucket(
        bucket_name=settings.s3_bucket, bucket_folder="prefect-results",
        credentials=AwsCredentials(region_name=settings.aws_region, aws_client_parameters=client_parameters),
    )
    auth = settings.prefect_auth_string.get_secret_value() if settings.prefect_auth_string else os.environ.get("PREFECT_API_AUTH_STRING")
    with temporary_settings({PREFECT_API_URL: settings.resolved_prefect_api_url, PREFECT_API_AUTH_STRING: auth}):
        block.save(name, overwrite=True)
    return settings.resolved_result_storage


def services_in_order(settings: Settings, exported: dict[str, str]) -> list[Service]:
    """Every service of the layout, in start order (``down`` stops them in reverse)."""
    layout = [mlflow(settings), prefect_api(settings, 0), prefect_api(settings, 1), prefect_services(settings)]
    layout.append(bridge(settings, exported))
    for index in range(len(WORKERS)):
        layout += [fork_server(settings, index, exported), worker(settings, index, exported)]
    return layout
