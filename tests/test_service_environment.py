"""What each service of the stack receives from the environment of whoever starts it (infra.services.process_env),
built by the stack's own functions, no process started: servers (moto, MLflow, Prefect) get a few harmless
variables and what they need; the processes that call other services (worker, fork server, bridge, endpoint)
keep the starter's credentials."""

from __future__ import annotations

import os

import pytest

from infra import production, services, stack
from leanops.settings import Settings

# Secrets of other systems in the operator's shell: no server may see any of them.
SENTINELS = {
    "LEANOPS_SLACK_TOKEN": "xoxb-sentinel-slack",
    "LEANOPS_SLACK_CHANNEL": "#sentinel-channel",
    "AWS_ACCESS_KEY_ID": "AKIASENTINELKEY",
    "AWS_SECRET_ACCESS_KEY": "sentinel-aws-secret",
    "AWS_SESSION_TOKEN": "sentinel-aws-session",
    "MLFLOW_TRACKING_PASSWORD": "sentinel-mlflow-client-password",
    "PGPASSWORD": "sentinel-pg-password",
    "GITHUB_TOKEN": "sentinel-github-token",
    "PREFECT_API_AUTH_STRING": "client:sentinel-prefect-client",
}
HARMLESS = {"LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TMPDIR": "/tmp", "PYTHONPATH": "/opt/extra"}


def leaked(env: dict[str, str]) -> list[str]:
    """The sentinel variables, by name, whose value shows up anywhere in ``env``."""
    return sorted(name for name, value in SENTINELS.items() if any(value in v for v in env.values()))


def embedded_servers(settings: Settings) -> list[services.Service]:
    return [stack.moto(settings), stack.mlflow(settings), stack.prefect(settings)]


def production_servers(settings: Settings) -> list[services.Service]:
    return [production.mlflow(settings), production.prefect_api(settings, 0), production.prefect_api(settings, 1), production.prefect_services(settings)]


def production_settings(tmp_path, **values) -> Settings:
    return Settings(
        profile="production", home=tmp_path, prefect_auth_string="ops:prefect-own", mlflow_password="mlflow-own",
        postgres_url="postgresql://leanops:db-own@127.0.0.1:5432", slack_token="xoxb-sentinel-slack", **values,
    )


@pytest.fixture
def parent_env(monkeypatch):
    """The starter's environment (os.environ, which the stack's functions read) holds every sentinel."""
    for name, value in {**SENTINELS, **HARMLESS}.items():
        monkeypatch.setenv(name, value)


def test_embedded_servers_get_no_secret_of_the_starter(parent_env, tmp_path):
    settings = Settings(home=tmp_path, slack_token="xoxb-sentinel-slack")
    for server in embedded_servers(settings):
        env = services.process_env(server)
        assert leaked(env) == [], server.name
        assert not [name for name in env if name.startswith("LEANOPS_SLACK")], server.name
        # The harmless ones pass, the venv's bin first on PATH.
        assert {name: env[name] for name in HARMLESS} == HARMLESS and env["HOME"] == os.environ["HOME"]
        assert env["PATH"] == f"{services.BIN}:{os.environ['PATH']}"
    # And what each needs is there: moto signs with placeholder keys, Prefect keeps its state where told.
    moto, mlflow, prefect = (services.process_env(s) for s in embedded_servers(settings))
    assert moto["AWS_SECRET_ACCESS_KEY"] == "leanops" and mlflow["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert prefect["PREFECT_HOME"] == str(tmp_path / "prefect")


def test_production_servers_get_their_own_credentials_only(parent_env, tmp_path):
    settings = production_settings(tmp_path)
    mlflow, *prefect = (services.process_env(s) for s in production_servers(settings))
    migration = services.server_process_env(production.server_env(settings), services.PREFECT_SERVER_CONFIGURATION)
    for env in [mlflow, *prefect, migration]:
        assert leaked(env) == []
    # MLflow on the local S3 endpoint signs with the placeholders; each server knows its own password only.
    assert mlflow["AWS_SECRET_ACCESS_KEY"] == "leanops" and mlflow["MLFLOW_AUTH_ADMIN_PASSWORD"] == "mlflow-own"
    assert not any("prefect-own" in value for value in mlflow.values())
    for env in [*prefect, migration]:
        assert env["PREFECT_SERVER_API_AUTH_STRING"] == "ops:prefect-own"
        assert not any("mlflow-own" in value for value in env.values())


def test_mlflow_proxying_real_s3_takes_the_starters_aws_identity_and_nothing_else(parent_env, tmp_path):
    settings = production_settings(tmp_path, s3_use_local_endpoint=False)
    mlflow = services.process_env(production.mlflow(settings))
    assert leaked(mlflow) == ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"]
    assert "MLFLOW_S3_ENDPOINT_URL" not in mlflow


def test_processes_that_call_services_keep_the_starters_credentials(parent_env, tmp_path):
    settings = Settings(home=tmp_path)
    for caller in (stack.worker(settings), stack.fork_server(settings), stack.bridge(settings), stack.endpoint(settings)):
        env = services.process_env(caller)
        assert env["LEANOPS_SLACK_TOKEN"] == "xoxb-sentinel-slack" and env["PREFECT_API_AUTH_STRING"] == "client:sentinel-prefect-client", caller.name
