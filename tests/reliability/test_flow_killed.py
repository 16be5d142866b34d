"""Scenario 3: the flow process is killed (SIGKILL) mid-run.

A retrain runs as its own process (`python -m flows.retrain ...`, as a person or a cron line starts it)
against the session's Prefect and MLflow servers. Once its fit has started, the process is killed with
SIGKILL: no hook, no `finally`, nothing of it runs again. A rerun of the same retrain then converges: it
reuses the features the killed run had cached (the cache is not poisoned by the kill), registers exactly one
version, and that version loads as served and predicts.

What Prefect 3.9 does with the killed run: nothing by itself. A run started in-process has no worker
watching it; the server marks it Crashed only through the zombie-run automation (deployments/zombie_runs.py),
which the test session's server has: ~90 s after the run's last heartbeat (the session's runs beat every
30 s). Right after the kill the run is still Running, as asserted here."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from leanops import datasets, registry, smoke, storage
from support import prefect_request, spec_copy, started_task_names, task_run_states, wait_for

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
MODEL = "reliability-killed"
# Enough trees that the fit lasts a few seconds on a busy 2-core machine: the kill lands inside it.
TREES = 1500


def retrain_runs(api: str, spec_path: str) -> list[dict]:
    body = {"flows": {"name": {"any_": ["retrain"]}}, "sort": "EXPECTED_START_TIME_ASC", "limit": 50}
    runs = prefect_request("POST", f"{api}/flow_runs/filter", json=body).json()
    return [run for run in runs if run["parameters"].get("spec") == spec_path]


def flow_run(api: str, run_id: str) -> dict:
    return prefect_request("GET", f"{api}/flow_runs/{run_id}").json()


def test_a_retrain_killed_mid_fit_leaves_no_version_and_a_rerun_registers_one_that_predicts(stack, tmp_path, record):
    from flows.retrain import retrain

    row = record("3 retrain process SIGKILLed mid-fit, rerun", "SIGKILL of the flow process during fit_model")
    api = stack.resolved_prefect_api_url
    spec_path = str(spec_copy(tmp_path, MODEL, model__params__n_estimators=TREES))
    training = datasets.flights_sample(range(1, 7), rows_per_month=400, seed=23)
    uri = storage.write_table(training, f"s3://{stack.s3_bucket}/training/{MODEL}/2013-h1.parquet")

    log = (tmp_path / "killed-retrain.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "flows.retrain", "--spec", spec_path, "--batch-uri", uri],
        cwd=REPO, env=dict(os.environ), stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        (killed_run,) = wait_for(lambda: retrain_runs(api, spec_path), "the retrain's flow run on the server", 60)
        wait_for(lambda: process.poll() is not None or "fit_model" in started_task_names(api, killed_run["id"]),
                 "the killed retrain to start fitting", 60, 0.1)
        assert process.poll() is None, f"the retrain ended before the kill: {(tmp_path / 'killed-retrain.log').read_text()[-2000:]}"
        process.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        assert process.wait(timeout=10) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()

    # Nothing half-done: the kill came before registration.
    assert not registry.model_exists(MODEL) or registry.list_versions(MODEL) == []
    assert "register_model" not in started_task_names(api, killed_run["id"])
    # Right after the kill the server still shows the run Running (the automation fires ~90 s later).
    assert flow_run(api, killed_run["id"])["state_type"] == "RUNNING"

    rerun = retrain(spec=spec_path, batch_uri=uri, return_state=True)

    assert rerun.is_completed(), rerun.message
    registration = rerun.result()
    assert registration.created and registration.model_name == MODEL
    states = task_run_states(api, rerun.state_details.flow_run_id, expect=("build_features", "fit_model", "register_model"))
    # The features the killed run cached are reused, and sound: the fit on them is the one registered.
    assert states["build_features"] == "Cached" and states["fit_model"] == "Completed", states
    assert [v.version for v in registry.list_versions(MODEL)] == [registration.version]
    info = registry.get_version(MODEL, registration.version)
    assert smoke.smoke_test(info, registry.load_recorded_spec(info)).passed
    # Flights it never saw, sent as a client of the served model sends them (its input example's columns and types).
    example = registry.load_input_example(info)
    unseen = datasets.flights_sample([9], rows_per_month=300, seed=29)[list(example.columns)].astype(example.dtypes.to_dict())
    probabilities = np.asarray(registry.load_pyfunc(info).predict(unseen), dtype=float)
    assert probabilities.shape == (len(unseen), 2) and np.allclose(probabilities.sum(axis=1), 1.0)
    assert ((0 <= probabilities) & (probabilities <= 1)).all() and probabilities[:, 1].std() > 0.01

    again = retrain(spec=spec_path, batch_uri=uri)
    assert not again.created and again.version == registration.version
    assert len(registry.list_versions(MODEL)) == 1
    row.survived, row.recover_seconds = True, time.monotonic() - killed_at
    row.data_lost = "none"


def test_the_zombie_run_automation_is_created_once(stack):
    """The session's server got the stack's automation; asking again changes nothing."""
    from deployments.zombie_runs import AUTOMATION_NAME, ensure_zombie_automation

    assert ensure_zombie_automation(stack.resolved_prefect_api_url) == "unchanged"
    body = {"automations": {"name": {"any_": [AUTOMATION_NAME]}}}
    (automation,) = prefect_request("POST", f"{stack.resolved_prefect_api_url}/automations/filter", json=body).json()
    assert automation["enabled"] and automation["trigger"]["within"] == 90.0
    assert automation["actions"][0]["state"] == "CRASHED"
