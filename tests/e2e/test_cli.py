"""The ``leanops`` command line against the real local services (Prefect server, MLflow server, moto S3):
a newcomer's model from ``spec init`` to retrain, promote (with a human approval), status, history,
rollback and retirement, using the CLI alone."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path

import prefect.main  # noqa: F401 - Prefect binds its console log handler to sys.stderr when set up: do it here,
import pytest  # not inside a CliRunner invocation, whose stderr is closed when it returns
import yaml
from prefect.exceptions import ObjectNotFound
from typer.testing import CliRunner

from leanops import datasets, registry, storage
from leanops_cli.app import app
from support import wait_for

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
WEAK = {"n_estimators": 1, "max_depth": 1}


@pytest.fixture
def specs_dir(tmp_path, monkeypatch):
    """A specs folder of its own: ``leanops status`` lists exactly the models of this test."""
    from leanops.settings import reset_settings_cache

    folder = tmp_path / "specs"
    folder.mkdir()
    monkeypatch.setenv("LEANOPS_SPECS_DIR", str(folder))
    reset_settings_cache()
    yield folder
    monkeypatch.undo()
    reset_settings_cache()


@pytest.fixture
def cli():
    runner = CliRunner()

    def run(*args, expect: int = 0) -> dict:
        result = runner.invoke(app, [str(a) for a in args] + ["--json"], catch_exceptions=False)
        assert result.exit_code == expect, f"leanops {' '.join(map(str, args))}: {result.stdout}\n{result.stderr}"
        return json.loads(result.stdout)

    return run


@pytest.fixture(scope="module")
def flights_csv(tmp_path_factory):
    """1,800 real flights of January-June 2013, as a newcomer's CSV export."""
    path = tmp_path_factory.mktemp("cli-data") / "flights.csv"
    datasets.flights_sample(range(1, 7), rows_per_month=300, seed=5).to_csv(path, index=False)
    return path


def _edit(path: Path, **sections) -> None:
    data = yaml.safe_load(path.read_text())
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def _resume(flow_run_id: str, **answer) -> None:
    from prefect.flow_runs import resume_flow_run

    def answered() -> bool:
        try:
            resume_flow_run(flow_run_id, run_input=answer)
        except RuntimeError:  # the form's schema is saved just after the pause
            return False
        return True

    wait_for(answered, f"the approval form of {flow_run_id} to accept an answer", 30, 0.3)


def test_a_new_model_through_its_lifecycle_with_the_cli_alone(cli, specs_dir, flights_csv, s3_endpoint, mlflow_server, prefect_server, settings):
    storage.ensure_bucket(settings.s3_bucket)
    name = f"cli-{uuid.uuid4().hex[:6]}"
    spec_path = specs_dir / f"{name}.yaml"

    # Given a spec written from the data and checked against it
    made = cli("spec", "init", name, "--data", flights_csv, "--target", "dep_delay", "--positive-when-gt", 15, "--time", "time_hour", "--out", spec_path)
    assert made["task"] == "binary"
    assert cli("spec", "check", name, "--data", flights_csv)["ok"] is True

    # When a weak first model is trained and promoted in this process
    # The latency gate has its own tests (test_promotion); on a shared CI machine it must not decide this story.
    _edit(spec_path, model={"params": WEAK}, promotion={"must_beat_baseline": False, "latency_budget_ms_per_1k_rows": 60_000})
    first = cli("retrain", name, "--data", flights_csv, "--local")
    assert first["result"]["version"] == "1" and first["result"]["created"] is True
    assert first["url"].endswith(f"/runs/flow-run/{first['flow_run_id']}")
    assert cli("promote", name, "--local")["result"]["action"] == "promoted"

    # And a stronger one waits for a person's approval, which `status` links to
    _edit(spec_path, model={"params": {"n_estimators": 200, "max_depth": 4}})
    assert cli("retrain", name, "--data", flights_csv, "--local")["result"]["version"] == "2"
    waiting = subprocess.Popen(  # the installed console script, as a user runs it
        [str(Path(sys.executable).parent / "leanops"), "promote", name, "--approval", "manual", "--local", "--json"],
        cwd=ROOT, env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        def open_approval():
            row = next(m for m in cli("status")["models"] if m["model"] == name)
            return row["open_approvals"] and row

        try:
            row = wait_for(open_approval, "the promotion to wait for approval", 120, 1.0)
        except AssertionError as waited_in_vain:  # say what the promote process did instead
            waiting.kill()
            out, err = waiting.communicate(timeout=30)
            raise AssertionError(f"{waited_in_vain}\npromote exited {waiting.returncode}\nstdout: {out[-3000:]}\nstderr: {err[-3000:]}") from None
        assert (row["champion"].startswith("v1"), row["challenger"].startswith("v2"), row["state"]) == (True, True, "active")
        assert row["last_retrain"] == "Completed" and row["next_retrain_at"]
        _resume(row["open_approvals"][0].rsplit("/", 1)[1], approve=True, reason="better on the holdout", approver="cli-test")
        out, err = waiting.communicate(timeout=120)
    finally:
        if waiting.poll() is None:
            waiting.kill()
    assert waiting.returncode == 0, err
    assert json.loads(out)["result"]["action"] == "promoted"

    # Then status, history and a rollback tell and change the story
    row = next(m for m in cli("status")["models"] if m["model"] == name)
    assert row["champion"].startswith("v2") and row["challenger"] is None and row["open_approvals"] == []
    rolled = cli("rollback", name, "--reason", "complaints since the release", "--local")["result"]
    assert (rolled["action"], rolled["version"]) == ("rolled_back", "1")
    history = cli("history", name)
    assert [(c["action"], c["version"], c["by"]) for c in history][:2] == [("promoted", "1", "policy:auto"), ("promoted", "2", "cli-test")]
    assert history[-1]["action"] == "rolled_back" and history[-1]["reason"].startswith("complaints since the release")

    # And retiring keeps every version and the history, until reinstated
    retired = cli("retire", name, "--reason", "replaced")
    assert retired["kept"] == {"versions": ["1", "2"], "champion": "1"}
    row = next(m for m in cli("status")["models"] if m["model"] == name)
    assert row["state"] == "retired (replaced)" and row["next_retrain_at"] is None and row["champion"].startswith("v1")
    assert len(cli("history", name)) == len(history)
    assert cli("reinstate", name) == {"ok": True, "model": name, "was_retired": True}
    assert registry.get_alias(name, registry.CHAMPION).version == "1"


@contextlib.contextmanager
def deployment_of(flow, full_name: str):
    """The deployment the CLI starts, created for this test when the session has none (no worker runs it)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        try:
            deployment_id, created = client.read_deployment_by_name(full_name).id, False
        except ObjectNotFound:
            deployment_id, created = flow.to_deployment(full_name.split("/")[1]).apply(), True
        try:
            yield client, deployment_id
        finally:
            if created:
                client.delete_deployment(deployment_id)


def test_retrain_starts_the_deployment_and_prints_where_to_watch_it(cli, specs_dir, flights_csv, prefect_server):
    from flows.retrain import retrain
    from leanops_cli.run_commands import RETRAIN_DEPLOYMENT

    name = f"cli-{uuid.uuid4().hex[:6]}"
    cli("spec", "init", name, "--data", flights_csv, "--target", "dep_delay", "--positive-when-gt", 15, "--out", specs_dir / f"{name}.yaml")
    with deployment_of(retrain, RETRAIN_DEPLOYMENT) as (client, deployment_id):
        started = cli("retrain", name, "--data", "s3://leanops/incoming/x/")
        run = client.read_flow_run(started["flow_run_id"])
        client.delete_flow_run(run.id)  # nothing should train it
        assert run.deployment_id == deployment_id
        assert run.parameters == {"spec": name, "batch_uri": "s3://leanops/incoming/x/", "reason": "manual"}
        assert started["url"] == f"{prefect_server.removesuffix('/api')}/runs/flow-run/{run.id}"


def test_promote_can_ask_a_person_again(cli, specs_dir, flights_csv, prefect_server):
    from flows.promote import promote
    from leanops_cli.run_commands import PROMOTE_DEPLOYMENT

    name = f"cli-{uuid.uuid4().hex[:6]}"
    cli("spec", "init", name, "--data", flights_csv, "--target", "dep_delay", "--positive-when-gt", 15, "--out", specs_dir / f"{name}.yaml")
    with deployment_of(promote, PROMOTE_DEPLOYMENT) as (client, deployment_id):
        started = cli("promote", name, "--version", "3", "--approval", "manual", "--ask-again")
        run = client.read_flow_run(started["flow_run_id"])
        client.delete_flow_run(run.id)  # nothing should judge it
        assert run.deployment_id == deployment_id
        assert (run.parameters["version"], run.parameters["approval"], run.parameters["ask_again"]) == ("3", "manual", True)


def test_commands_name_what_is_missing(cli, specs_dir, mlflow_server, prefect_server):
    assert cli("retire", "never-heard-of", expect=1)["error"] == (
        "no model 'never-heard-of': no spec of that name in the specs folder and nothing registered"
    )
    assert cli("history", "never-heard-of", expect=1)["error"] == "no registered model 'never-heard-of'"
    assert cli("status") == {"models": [], "unreadable_specs": {}}


def test_land_puts_a_batch_where_the_bucket_notifies_the_drift_check(cli, specs_dir, flights_csv, s3_endpoint, settings):
    storage.ensure_bucket(settings.s3_bucket)
    name = f"cli-{uuid.uuid4().hex[:6]}"
    cli("spec", "init", name, "--data", flights_csv, "--target", "dep_delay", "--positive-when-gt", 15, "--out", specs_dir / f"{name}.yaml")

    landed = cli("land", name, flights_csv)

    assert landed["uri"] == f"s3://{settings.s3_bucket}/{settings.s3_incoming_prefix}{name}/flights.parquet"
    frame, _ = storage.read_table(landed["uri"])
    assert len(frame) == landed["rows"] == 1800


def _beat_since(settings, name: str, since: datetime) -> bool:
    """Whether the worker ``name`` sent a heartbeat at or after ``since``. A worker's name can be an earlier
    one's of the same session (it follows the health port), whose record keeps its last, stale heartbeat."""
    from support import api_call

    listed = api_call(settings.resolved_prefect_api_url, "POST", f"/work_pools/{settings.work_pool_name}/workers/filter", {}).json()
    return any(w["name"] == name and w["last_heartbeat_time"] and datetime.fromisoformat(w["last_heartbeat_time"]) >= since
               for w in listed)


def test_doctor_passes_on_the_running_stack_then_names_a_stopped_service(cli, stack, fork_server, slack, settings, tmp_path, monkeypatch):
    from infra import services
    from infra.stack import ensure_work_pool, provision_s3, worker
    from leanops.settings import get_settings, reset_settings_cache
    from conftest import _free_port

    # Given the stack with its own S3 + SQS endpoint (a moto of this test's: the one this test stops), a worker
    # polling the pool, the fork server, Slack (a stand-in accepting any token) and the project's specs
    endpoint = services.moto_server(settings.host, _free_port())
    services.start(endpoint, tmp_path)
    for name, value in {"LEANOPS_S3_PORT": endpoint.argv[-1], "LEANOPS_SLACK_TOKEN": "xoxb-doctor",
                        "LEANOPS_SLACK_BASE_URL": slack.base_url, "LEANOPS_SPECS_DIR": str(ROOT / "specs")}.items():
        monkeypatch.setenv(name, value)
    reset_settings_cache()
    ours = get_settings()
    provision_s3(ours)
    ensure_work_pool(ours)
    polling = worker(ours)
    started = datetime.now(timezone.utc)
    services.start(polling, tmp_path)
    try:
        name = polling.argv[polling.argv.index("--name") + 1]
        wait_for(lambda: _beat_since(ours, name, started), "the new worker's first heartbeat", 60, 0.5)

        # Then every check passes, one line per service
        passed = cli("doctor")
        assert passed["ok"] is True and [c for c in passed["checks"] if c["status"] != "ok"] == []
        assert {c["service"] for c in passed["checks"]} >= {
            "Prefect API", "Prefect API: database", "work pool leanops-pool", "workers of leanops-pool", "MLflow", "S3 bucket",
            "SQS queue leanops-batches", "dead-letter queue leanops-batches-dead", "notification s3://leanops/incoming/*.parquet",
            "Slack", "fork server", "spec flights-delay", "spec kershaw-pitch-type",
        }

        # When the S3 + SQS endpoint stops
        services.stop(endpoint, tmp_path)
        failed = cli("doctor", expect=1)
    finally:
        services.stop(polling, tmp_path)
        services.stop(endpoint, tmp_path)
        monkeypatch.undo()
        reset_settings_cache()

    # Then doctor names it, unreachable, with the fix; everything else still passes
    checks = {c["service"]: c for c in failed["checks"]}
    bucket = checks["S3 bucket"]
    assert bucket["status"] == "fail" and bucket["said"].startswith(f"the object store at http://127.0.0.1:{endpoint.argv[-1]} is unreachable")
    assert bucket["fix"].startswith("start what is down: make stack-up")
    assert {s for s, c in checks.items() if c["status"] == "fail"} == {"S3 bucket", "SQS queue leanops-batches", "dead-letter queue leanops-batches-dead"}
    assert {s for s, c in checks.items() if c["status"] == "skip"} == {"notification s3://leanops/incoming/*.parquet"}
