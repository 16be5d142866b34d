"""The production layout's background services count as started only once Prefect's triggers service
listens for automation changes and consumes events, so nothing the stack or a team deploys afterwards can
be missed; a service that fails is started again.

Why it matters (Prefect 3.9.1, infra/triggers_ready.py and infra/prefect_services.py): an automation
created while the triggers service starts, after its first load and before its LISTEN, is never loaded;
and a triggers service whose first database read fails is dead while its listener goes on LISTENing. The
soak saw both as a registration that never started promote.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis

from infra import production, services
from infra.production import claim_redis_database
from leanops.settings import Settings
from reliability.proxy import TcpProxy
from support import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.production]

UID = uuid.uuid4().hex[:6]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def layout(tmp_path):
    settings = Settings(
        profile="production", home=tmp_path, database_prefix=f"leanops_e2e_services_{UID}", database_templates=True,
        redis_url=claim_redis_database(range(12, 16), "leanops-e2e-claim", UID, hold_seconds=900),
        prefect_auth_string=f"ops:prefect-{UID}", mlflow_password=f"mlflow-{UID}",
    )
    try:
        production.ensure_databases(settings)
        yield settings
    finally:
        production.drop_databases(settings)
        redis.Redis.from_url(settings.redis_url.get_secret_value()).flushdb()


def test_the_background_services_start_only_once_their_triggers_listen_for_automation_changes(layout):
    service = production.prefect_services(layout)
    assert not production.listens_for_automation_changes(layout)
    assert healthcheck(service).returncode == 1
    try:
        services.start(service, layout.home)

        assert production.listens_for_automation_changes(layout), "start() returned before the triggers service listened"
        assert production.triggers_consume_events(layout), "start() returned before the triggers service consumed events"
        assert services.is_healthy(service)
        # The compose healthcheck of prefect-services says the same, from Prefect's own configuration.
        assert healthcheck(service).returncode == 0
    finally:
        services.stop(service, layout.home)
    assert not production.listens_for_automation_changes(layout)
    stopped = healthcheck(service)
    assert stopped.returncode == 1 and "nothing listens on prefect_automation_changes" in stopped.stderr


def healthcheck(service) -> subprocess.CompletedProcess:
    """``python -m infra.triggers_ready`` in the services' own environment, as compose runs it in their container."""
    return subprocess.run(  # noqa: S603 - fixed argv
        [sys.executable, "-m", "infra.triggers_ready"], env=services.process_env(service), cwd=ROOT,
        capture_output=True, text=True, timeout=60,
    )


def test_a_triggers_service_whose_first_database_read_fails_is_started_again_and_only_then_ready(layout):
    """The soak's dead triggers service, injected: PostgreSQL is cut off (a TCP proxy in front of it) while
    the services start, so the triggers service's first read of the automations fails. Prefect's own
    `prefect server services start` leaves it dead and silent, with its listener LISTENing once the
    database is back; here it is logged, started again, and the services count as ready only after that."""
    database = production.server_env(layout)["PREFECT_API_DATABASE_CONNECTION_URL"]
    host_port = database.split("@", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    proxy = TcpProxy(host, int(port))
    proxy.down()
    through_proxy = database.replace(f"@{host_port}/", f"@{proxy.host}:{proxy.port}/")
    service = production.prefect_services(layout)
    log = service.log_file(layout.home)
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        starting = pool.submit(services.start, service, layout.home, {"PREFECT_API_DATABASE_CONNECTION_URL": through_proxy})
        wait_for(lambda: log.exists() and "Prefect service ReactiveTriggers failed" in log.read_text(errors="replace"),
                 "the triggers service's failure in the services' log", 120, 0.5)
        assert not starting.done() and not production.triggers_are_ready(layout)
        proxy.up()
        starting.result(timeout=120)

        assert production.triggers_are_ready(layout)
        text = log.read_text(errors="replace")
        assert proxy.refused > 0 and "starting it again" in text
        assert "ConnectionResetError" in text or "ConnectionRefusedError" in text or "OSError" in text, text[-3000:]
    finally:
        services.stop(service, layout.home)  # also ends a start() still waiting for readiness
        pool.shutdown(wait=True)
        proxy.close()
