"""The production layout's background services count as started only once Prefect's triggers service
listens for automation changes, so nothing the stack or a team deploys afterwards can be missed.

Why it matters (Prefect 3.9.1, infra.production.listens_for_automation_changes): an automation created
while the triggers service starts, after its first load and before its LISTEN, is never loaded. The soak
saw it as a registration that never started promote, with prefect.yaml deployed while the services started.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import redis

from infra import production, services
from infra.production import claim_redis_database
from leanops.settings import Settings

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
