"""The production profile's wiring, without starting it: one setting moves every default, each worker
gets its own folders and API, and the stack refuses to start without its credentials."""

from __future__ import annotations

import pytest

from infra import production, stack, triggers_ready
from leanops.settings import Settings


def prod(tmp_path, **values) -> Settings:
    base = dict(profile="production", home=tmp_path, database_prefix="team_a", prefect_auth_string="ops:pw",
                mlflow_password="mlflow-pw", postgres_url="postgresql://leanops:db-secret@db.internal:5432",
                prefect_port=4200, prefect_second_port=4202, s3_bucket="leanops")
    return Settings(**{**base, **values})


def test_one_setting_moves_every_default_to_shared_services(tmp_path):
    embedded, settings = Settings(home=tmp_path), prod(tmp_path)

    assert embedded.resolved_optuna_storage.get_secret_value().startswith("journal:")
    assert settings.resolved_optuna_storage.get_secret_value() == "postgresql://leanops:db-secret@db.internal:5432/team_a_optuna"
    assert settings.database_url("prefect", "postgresql+asyncpg").endswith("@db.internal:5432/team_a_prefect")
    assert not embedded.result_storage_is_block and settings.result_storage_is_block
    assert settings.resolved_result_storage == "s3-bucket/team-a-results"
    assert settings.resolved_alert_state_uri == "s3://leanops/state/notify/slack-alerts.json"
    assert settings.resolved_mlflow_artifacts_destination == "s3://leanops/mlflow"
    assert settings.prefect_api_urls == ("http://127.0.0.1:4200/api", "http://127.0.0.1:4202/api")
    assert "db-secret" not in repr(settings) and "mlflow-pw" not in repr(settings) and "ops:pw" not in repr(settings)


def test_each_worker_has_its_own_homes_fork_server_api_and_queue(tmp_path):
    settings = prod(tmp_path)
    exported = stack.child_env(settings)
    workers = [production.worker(settings, i, exported) for i in range(2)]
    forks = [production.fork_server(settings, i, exported) for i in range(2)]

    homes = [w.env["LEANOPS_HOME"] for w in workers]
    assert homes == [str(tmp_path / "worker-a"), str(tmp_path / "worker-b")]
    assert [w.env["PREFECT_HOME"] for w in workers] == [f"{h}/prefect" for h in homes]
    assert [w.env["PREFECT_API_URL"] for w in workers] == list(settings.prefect_api_urls)
    assert [w.env["LEANOPS_FORK_SERVER_SOCKET"] for w in workers] == [f"{h}/run/forkserver.sock" for h in homes]
    assert [f.argv[f.argv.index("--socket") + 1] for f in forks] == [f"{h}/run/forkserver.sock" for h in homes]
    for index, worker in enumerate(workers):
        assert worker.argv[-4:] == ["--work-queue", "default", "--work-queue", f"worker-{'ab'[index]}"]
        assert worker.env["PREFECT_API_AUTH_STRING"] == "ops:pw"
        assert worker.env["PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK"] == "s3-bucket/team-a-results"
        assert worker.env["MLFLOW_TRACKING_USERNAME"] == "admin" and worker.env["MLFLOW_TRACKING_PASSWORD"] == "mlflow-pw"
        # The flow runs find their databases and credentials from the same settings.
        assert worker.env["LEANOPS_PROFILE"] == "production" and worker.env["LEANOPS_POSTGRES_URL"].endswith("@db.internal:5432")
    assert production.bridge(settings, exported).env["PREFECT_API_URL"] == settings.prefect_api_urls[0]


def test_prefect_server_processes_share_postgres_and_redis_and_never_migrate_on_start(tmp_path):
    settings = prod(tmp_path, redis_url="redis://127.0.0.1:6379/9")
    apis = [production.prefect_api(settings, i) for i in range(2)]
    services = production.prefect_services(settings)

    assert [a.argv[-3:] for a in apis] == [["--port", "4200", "--no-services"], ["--port", "4202", "--no-services"]]
    assert services.argv[-2:] == ["-m", "infra.prefect_services"]
    for process in (*apis, services):
        assert process.env["PREFECT_API_DATABASE_CONNECTION_URL"].endswith("/team_a_prefect")
        assert process.env["PREFECT_API_DATABASE_MIGRATE_ON_START"] == "false"
        assert process.env["PREFECT_MESSAGING_BROKER"] == process.env["PREFECT_MESSAGING_CACHE"] == "prefect_redis.messaging"
        assert process.env["PREFECT_SERVER_EVENTS_CAUSAL_ORDERING"] == "prefect_redis.ordering"
        assert process.env["PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE"] == "prefect_redis.lease_storage"
        assert process.env["PREFECT_REDIS_MESSAGING_URL"] == process.env["PREFECT_SERVER_DOCKET_URL"] == "redis://127.0.0.1:6379/9"
        assert process.env["PREFECT_SERVER_API_AUTH_STRING"] == "ops:pw"
    mlflow = production.mlflow(settings)
    assert "--app-name" in mlflow.argv and mlflow.argv[mlflow.argv.index("--app-name") + 1] == "basic-auth"
    assert mlflow.argv[mlflow.argv.index("--backend-store-uri") + 1].endswith("/team_a_mlflow")


def test_the_stack_refuses_to_start_production_without_its_credentials(tmp_path):
    settings = prod(tmp_path, prefect_auth_string=None, mlflow_password=None)
    with pytest.raises(RuntimeError, match="LEANOPS_PREFECT_AUTH_STRING.*LEANOPS_MLFLOW_PASSWORD"):
        stack.up_production(settings)


def test_prefect_migrates_unless_its_database_was_just_copied_from_the_migrated_template(tmp_path):
    settings, templated = prod(tmp_path), prod(tmp_path, database_templates=True)
    just_created = ["team_a_prefect", "team_a_mlflow"]

    assert production.needs_migration(settings, just_created)
    assert not production.needs_migration(templated, just_created)
    assert production.needs_migration(templated, [])  # it existed already: maybe from an older Prefect
    # One template per Prefect + MLflow version pair, shared by every prefix on the server.
    assert production.template_name("prefect").startswith("leanops_template_prefect_")
    assert production.template_name("prefect") != production.template_name("mlflow")


@pytest.mark.parametrize("cache_seconds", [60, 0])
def test_mlflow_reads_its_auth_config_with_the_credential_cache(tmp_path, monkeypatch, cache_seconds):
    """MLflow's own parser reads the file the stack writes: the user store (a URL whose password may hold
    '%') and how long a verified credential is kept instead of hashing the password on every request."""
    from mlflow.server.auth.config import read_auth_config

    settings = prod(tmp_path, mlflow_auth_cache_seconds=cache_seconds, postgres_url="postgresql://leanops:p%40ss@db:5432")
    monkeypatch.setenv("MLFLOW_AUTH_CONFIG_PATH", str(production.mlflow_auth_config(settings)))
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_PASSWORD", "mlflow-pw")

    config = read_auth_config()
    assert config.auth_cache_ttl_seconds == cache_seconds
    assert config.database_uri == "postgresql://leanops:p%40ss@db:5432/team_a_mlflow_auth"
    assert config.default_permission == "NO_PERMISSIONS" and config.admin_username == "admin"


def test_the_services_wait_for_the_channel_prefect_announces_automation_changes_on(tmp_path):
    from prefect.server.events.models.automations import AUTOMATION_CHANGES_CHANNEL

    service = production.prefect_services(prod(tmp_path))

    assert triggers_ready.AUTOMATION_CHANGES_CHANNEL == AUTOMATION_CHANGES_CHANNEL
    assert service.ready_check is not None and AUTOMATION_CHANGES_CHANNEL in service.ready_check_name
