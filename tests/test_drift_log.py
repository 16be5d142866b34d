"""Drift reports are kept for the retention window, then ``leanops drift prune`` deletes them (report
artifacts and runs) from the test session's real MLflow server. Checks are dated in the past through
their runs' start times; the prune's cutoffs lie before every other test's runs."""

from __future__ import annotations

import json
import uuid

import pytest
from typer.testing import CliRunner

from leanops import drift_log
from leanops.errors import RegistryUnavailable
from leanops.mlflow_access import client
from leanops.settings import Settings
from support import dated_check, environment
from test_registry import dead_url

def state(run_id: str, settings: Settings) -> tuple[str, list[str]]:
    """(lifecycle stage, artifact paths under drift/) of a run."""
    mlflow_client = client(settings)
    return (mlflow_client.get_run(run_id).info.lifecycle_stage,
            sorted(a.path for a in mlflow_client.list_artifacts(run_id, "drift")))


@pytest.fixture
def own_settings(mlflow_server, tmp_path):
    return Settings(mlflow_tracking_uri=mlflow_server, home=tmp_path / "home")


def test_checks_older_than_the_window_lose_their_reports_and_runs(own_settings):
    model = f"prune-{uuid.uuid4().hex[:8]}"
    old = dated_check(model, 400, own_settings)
    dead = dated_check(model, 390, own_settings, report=False)  # its process died before the report
    recent = dated_check(model, 300, own_settings)
    ours = {f"leanops/{model}/monitoring/{run}" for run in (old, dead)}
    report = ["drift/report.html", "drift/report.json"]

    planned = drift_log.prune_reports(older_than_days=365, dry_run=True, settings=own_settings)
    assert set(planned.deleted) == ours and planned.dry_run
    assert state(old, own_settings) == ("active", report)

    done = drift_log.prune_reports(older_than_days=365, settings=own_settings)
    assert set(done.deleted) == ours
    assert state(old, own_settings) == ("deleted", [])
    assert state(dead, own_settings) == ("deleted", [])
    assert state(recent, own_settings) == ("active", report)
    assert drift_log.prune_reports(older_than_days=365, settings=own_settings).deleted == ()


def test_a_check_still_waiting_for_its_report_is_kept(own_settings):
    model = f"inflight-{uuid.uuid4().hex[:8]}"
    in_flight = dated_check(model, 0.01, own_settings, report=False)
    planned = drift_log.prune_reports(older_than_days=0, dry_run=True, settings=own_settings)
    assert not any(in_flight in run for run in planned.deleted)
    assert planned.kept_in_flight >= 1


def test_leanops_drift_prune(own_settings):
    from leanops_cli.app import app

    model = f"cli-prune-{uuid.uuid4().hex[:8]}"
    old = dated_check(model, 800, own_settings)
    with environment(LEANOPS_MLFLOW_TRACKING_URI=own_settings.resolved_mlflow_tracking_uri):
        dry = CliRunner().invoke(app, ["drift", "prune", "--older-than-days", "700", "--dry-run", "--json"])
        done = CliRunner().invoke(app, ["drift", "prune", "--older-than-days", "700"])
    assert dry.exit_code == 0 and json.loads(dry.stdout)["deleted"] == [f"leanops/{model}/monitoring/{old}"]
    assert done.exit_code == 0 and "deleted 1 drift check(s)" in done.stdout
    assert state(old, own_settings)[0] == "deleted"


def test_an_unreachable_mlflow_is_an_error_not_nothing_to_prune(tmp_path):
    unreachable = Settings(mlflow_tracking_uri=dead_url(), mlflow_http_retries=0, home=tmp_path / "home")
    with pytest.raises(RegistryUnavailable, match="unreachable"):
        drift_log.prune_reports(settings=unreachable)


def test_the_retention_setting_is_the_default_window(own_settings):
    model = f"window-{uuid.uuid4().hex[:8]}"
    old = dated_check(model, 1500, own_settings)
    short = own_settings.model_copy(update={"drift_report_retention_days": 1400})
    assert f"leanops/{model}/monitoring/{old}" in drift_log.prune_reports(dry_run=True, settings=short).deleted
    long = own_settings.model_copy(update={"drift_report_retention_days": 1600})
    assert f"leanops/{model}/monitoring/{old}" not in drift_log.prune_reports(dry_run=True, settings=long).deleted
