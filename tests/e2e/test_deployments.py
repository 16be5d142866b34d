"""prefect.yaml deployed with `prefect deploy --all` to a real Prefect server, fed by the S3 bridge (moto's
S3 + SQS) and run by a real process worker: triggers, the scheduler, cancelling, the CLI, reconciliation.
Duplicate notifications and the drift storm are rows of the fault-injection suite (tests/reliability/test_duplicates.py).

One deploy and one worker for the module (fixtures: tests/conftest.py). Tests that only count runs come first, before the worker
starts, and delete the runs they made so no worker ever executes them.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from leanops import datasets, events, manifest, registry, storage
from support import (
    api_call, automations_of, delete_runs, finished_runs, runs_of, settled_runs, spec_copy, started_task_names, wait_for,
    wait_for_events,
)

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TRIGGERED = {
    "retrain/on-drift": events.DRIFT_DETECTED,
    "drift-monitor/on-new-batch": events.BATCH_LANDED,
    "promote/on-new-challenger": events.MODEL_REGISTERED,
    "rollback/on-degraded": events.MODEL_DEGRADED,
    "score/on-new-batch": events.BATCH_TO_SCORE,
}
UID = uuid.uuid4().hex[:6]
WEEKLY, LANDED = f"weekly-{UID}", f"landed-{UID}"
SCORED = f"scored-{UID}"
LOGGED = f"logged-{UID}"  # served by the endpoint, its prediction log checked by drift-monitor
# Specs whose cron came due ten minutes before the module started (one of them retired): the scheduler's models.
DUE, ALSO_DUE, RETIRED = f"due-{UID}", f"also-due-{UID}", f"retired-{UID}"
DUE_AT = (datetime.now(timezone.utc) - timedelta(minutes=10)).replace(second=0, microsecond=0)
SLOW = f"slow-{UID}"  # tunes for up to 5 minutes: a run that is still going when it is cancelled
# Small but real: 2,000 flights and 60 trees train in a second or two. The flights spec's one-minute
# cooldown (tuned for the demo) could lapse mid-test on a busy machine: an hour here.
SMALL_MODEL = {"model__params__n_estimators": 60, "retrain_window__cooldown_minutes": 60}


# --- fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def specs_dir(stack, tmp_path_factory):
    """Spec copies the worker (and the scheduler) find by model name, with their training windows in the
    bucket. Only the scheduler's models have a cron; the others never come due during the module.

    The windows live outside the watched prefix, so writing them announces nothing."""
    folder = tmp_path_factory.mktemp("deployment-specs")
    frame = datasets.flights_sample(range(1, 5), rows_per_month=500, seed=5)
    unscheduled = {"schedule__cron": None}
    spec_copy(folder, WEEKLY, retrain_window__prefix=f"windows/{WEEKLY}/", **SMALL_MODEL, **unscheduled)
    storage.write_table(frame, f"s3://{stack.s3_bucket}/windows/{WEEKLY}/2013-01-04.parquet")
    spec_copy(folder, SLOW, retrain_window__prefix=f"windows/{WEEKLY}/", tuning__enabled=True,
              tuning__n_trials=100_000, tuning__timeout_seconds=300, **SMALL_MODEL, **unscheduled)
    spec_copy(folder, LANDED, **unscheduled)
    for name in (DUE, ALSO_DUE, RETIRED):
        spec_copy(folder, name, retrain_window__prefix=f"windows/{WEEKLY}/", schedule__cron=f"{DUE_AT:%M %H} * * *",
                  **SMALL_MODEL)
    return folder


@contextlib.contextmanager
def endpoint_in_thread(app):
    """``app`` served by uvicorn on a free port from a thread of this process (its lifespan runs: models load,
    the prediction log flushes); yields an HTTP client. Leaving stops the server, which flushes the log."""
    import httpx
    import uvicorn

    from e2e.test_serving import free_port

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, name="endpoint", daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started or not thread.is_alive(), "uvicorn to start", 60, 0.1)
        assert server.started, "uvicorn stopped while starting (see the captured log)"
        with httpx.Client(base_url=f"http://127.0.0.1:{server.config.port}", timeout=30) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(60)
        assert not thread.is_alive(), "uvicorn did not stop within 60 s"


# --- deploying -------------------------------------------------------------------------------------


def test_deploy_creates_every_deployment_on_the_pool_with_its_trigger(deployed, settings):
    api = settings.resolved_prefect_api_url
    for name, deployment_id in deployed.items():
        deployment = api_call(api, "GET", f"/deployments/{deployment_id}").json()
        assert deployment["work_pool_name"] == "leanops-pool", name
        assert deployment["job_variables"] == {"command": "python -m deployments.engine_command"}, name
        # No `pull:` section: workers run the code from the folder the deploy ran in.
        assert deployment["pull_steps"] == [
            {"prefect.deployments.steps.set_working_directory": {"directory": str(ROOT)}}
        ], name
        owned = automations_of(api, deployment_id)
        expected = [TRIGGERED[name]] if name in TRIGGERED else []
        assert [e for a in owned for e in a["trigger"]["expect"]] == expected, name
        assert all(a["enabled"] for a in owned), name
    # prefect.yaml's two schedules, deployed inactive (deploy_prefect_yaml checks that): no scheduler pass
    # or reconciliation starts mid-module.
    scheduled = {d["name"]: [s["cron"] for s in d.get("schedules") or []] for d in yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]}
    for name in ("schedule/every-5-minutes", "reconcile/hourly"):
        schedules = api_call(api, "GET", f"/deployments/{deployed[name]}").json()["schedules"]
        assert [s["schedule"]["cron"] for s in schedules] == scheduled[name.split("/")[1]], name
        assert runs_of(api, deployed[name]) == [], name


# --- events to runs (no worker yet: the runs stay scheduled and are deleted) ----------------------


def test_an_object_put_in_s3_starts_one_drift_check_with_the_decoded_key(deployed, s3_bridge, settings):
    api = settings.resolved_prefect_api_url
    key = f"incoming/{LANDED}/july flights {UID} été ü.parquet"

    uri = f"s3://{settings.s3_bucket}/{key}"

    storage.write_bytes(uri, b"PAR1 july", settings)

    runs = settled_runs(api, deployed["drift-monitor/on-new-batch"], key=key)
    delete_runs(api, runs)
    assert len(runs) == 1
    assert runs[0]["parameters"] == {"bucket": settings.s3_bucket, "key": key, "version_id": ""}
    # The reconciliation would announce this object under the bridge's id (moto sends no sequencer).
    [event] = wait_for_events(api, events.BATCH_LANDED, uri)
    info = storage.stat(uri, settings)
    assert event["id"] == events.batch_landed(settings.s3_bucket, key, None, None, info.size, info.etag).event_id


# --- with a worker ---------------------------------------------------------------------------------


def test_prefect_deployment_run_retrain_on_schedule_runs_on_the_worker(deployed, worker, specs_dir, fork_server, settings):
    api = settings.resolved_prefect_api_url
    spec_path = specs_dir / f"{WEEKLY}.yaml"

    done = subprocess.run(  # noqa: S603 - fixed argv
        [str(BIN / "prefect"), "deployment", "run", "retrain/on-schedule", "--param", f"spec={spec_path}",
         "--watch", "--watch-interval", "1", "--watch-timeout", "420"],
        cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=450,
    )

    [run] = runs_of(api, deployed["retrain/on-schedule"], spec=str(spec_path))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert run["state_name"] == "Completed"
    assert run["parameters"] == {"spec": str(spec_path), "reason": "schedule"}
    assert len(registry.list_versions(WEEKLY)) == 1
    # It started warm: forked from the fork server, not a new interpreter.
    assert f"(flow run {run['id']})" in fork_server.read_text()


def test_cancelling_a_run_in_prefect_stops_its_forked_process(deployed, worker, specs_dir, fork_server, settings):
    """Cancel from the UI (here its API call): the worker signals the flow-run command it started, the
    command forwards the signal to the process the fork server forked, and the run ends Cancelled."""
    import re

    api = settings.resolved_prefect_api_url
    body = {"parameters": {"spec": str(specs_dir / f"{SLOW}.yaml")}}
    run_id = api_call(api, "POST", f"/deployments/{deployed['retrain/on-schedule']}/create_flow_run", body).json()["id"]

    def state() -> str:
        return api_call(api, "GET", f"/flow_runs/{run_id}").json()["state_type"]

    wait_for(lambda: state() == "RUNNING", "the slow retrain to run", 120)
    forked = wait_for(lambda: re.search(rf"forked pid (\d+): .*\(flow run {run_id}\)", fork_server.read_text()), "its fork")
    pid = int(forked.group(1))
    wait_for(lambda: "tune_params" in started_task_names(api, run_id), "tuning to start", 120)

    api_call(api, "POST", f"/flow_runs/{run_id}/set_state", {"state": {"type": "CANCELLING", "name": "Cancelling"}, "force": True})

    wait_for(lambda: state() == "CANCELLED", "the run to be Cancelled", 90)
    wait_for(lambda: f"pid {pid} exited" in fork_server.read_text(), "the forked process to exit", 60)
    assert len(registry.list_versions(SLOW)) == 0  # nothing half-registered


def test_a_table_put_under_the_scoring_prefix_is_scored_by_the_champion(deployed, worker, specs_dir, settings):
    """The bridge routes an object under to-score/<model>/ to score/on-new-batch (never to a drift check):
    the run scores it chunk by chunk with the champion, shows its progress, and writes the predictions
    with the model version and the input's fingerprint under scored/<model>/."""
    import io

    import numpy as np
    import pandas as pd

    from e2e.test_serving import train_version
    from leanops import modeling
    from leanops.spec import load_spec

    api = settings.resolved_prefect_api_url
    spec = load_spec(spec_copy(specs_dir, SCORED, schedule__cron=None))
    version = train_version(spec, seed=41, params={"n_estimators": 20, "max_depth": 3})
    registry.set_alias(SCORED, registry.CHAMPION, version)
    unlabelled = datasets.flights_sample([8], rows_per_month=300, seed=6).drop(columns=["dep_delay", "arr_delay"])
    key = f"{settings.s3_scoring_prefix}{SCORED}/august {UID}.csv"
    uri = f"s3://{settings.s3_bucket}/{key}"

    storage.write_table(unlabelled, uri, settings)

    [run] = finished_runs(api, deployed["score/on-new-batch"], timeout=300, key=key)
    assert run["state_name"] == "Completed", run["state"]
    [output] = storage.list_objects(f"{settings.resolved_scoring_output_root}{SCORED}/", settings=settings)
    scored = storage.read_table(output.uri, settings)[0]
    sent = pd.read_csv(io.BytesIO(storage.read_bytes(uri, settings)))
    champion = registry.load_model(registry.get_version(SCORED, version))
    assert len(scored) == len(unlabelled) == 300
    assert np.array_equal(scored["probability"].to_numpy(), modeling.predict_scores(champion, sent, spec))
    assert set(scored["model_version"]) == {version}
    assert set(scored["input_fingerprint"]) == {storage.stat(uri, settings).fingerprint}
    progress = api_call(api, "POST", "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [run["id"]]}, "type": {"any_": ["progress"]}}}).json()
    assert [a["data"] for a in progress] == [100.0]
    [scored_event] = wait_for_events(api, events.BATCH_SCORED, events.model_resource_id(SCORED))
    assert scored_event["payload"]["output_uri"] == output.uri
    assert runs_of(api, deployed["drift-monitor/on-new-batch"], key=key) == []


def test_the_endpoints_logged_sample_and_its_later_labels_are_checked_by_drift_monitor(deployed, worker, specs_dir, tmp_path, settings):
    """The prediction log end to end. The endpoint (the serving app under uvicorn, in a thread of this process,
    with the prediction log sink and flusher it always runs, writing to the session's S3) answers single-row
    requests over HTTP; its log writes the sampled ones as a batch under incoming/<model>/_predictions/sample/,
    which the bridge routes to drift-monitor. Labels that arrive later for some of the answers are joined to
    the logged sample by prediction id, and the performance check scores the champion on exactly those rows.

    Requests stop once one batch plus a remainder are in the sample (the sample is chosen by prediction id, so
    the client can tell): the flusher writes one batch, stopping the app keeps the remainder beside the
    inspection stream. Drift must hold for 3 checks of 3: the two checks here never start a retrain."""
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    from e2e.test_serving import train_version
    from leanops import canary, drift_log, prediction_log
    from leanops.serving.requests import request_rows
    from leanops.spec import load_spec
    from serving.app import create_app
    from support import environment, prefect_request, read_events

    api = settings.resolved_prefect_api_url
    batch_rows, remainder_rows, unlabelled_rows, share = 50, 20, 10, 0.5
    overrides = {"contract__min_rows": batch_rows, "drift__min_rows": batch_rows, "drift__persistence_k": 3,
                 "drift__persistence_n": 3, "schedule__cron": None, "serving": {"log_sample_share": share}}
    served_specs = tmp_path / "served"
    served_specs.mkdir()
    spec = load_spec(spec_copy(served_specs, LOGGED, **overrides))
    spec_copy(specs_dir, LOGGED, **overrides)  # the same spec, where the worker finds it
    assert prediction_log.sample_batch_rows(spec) == batch_rows
    version = train_version(spec, seed=51, params={"n_estimators": 20, "max_depth": 3})
    registry.set_alias(LOGGED, registry.CHAMPION, version)
    flights = datasets.flights_sample([5, 6], rows_per_month=200, seed=7).dropna(subset=["dep_delay"])
    sample_prefix = prediction_log.incoming_log_prefix(LOGGED, prediction_log.SAMPLE, settings)

    answered: list[tuple[str, float, float]] = []  # prediction id, score, the label that arrives later
    with environment(LEANOPS_SPECS_DIR=str(served_specs), LEANOPS_PREDICTION_LOG_FLUSH_SECONDS="0.5",
                     LEANOPS_SERVING_FOLLOW_EVENTS="false", LEANOPS_SERVING_ALIAS_CHECK_SECONDS="3600"):
        with endpoint_in_thread(create_app()) as client:
            wait_for(lambda: client.get("/ready").status_code == 200, "the champion loaded", 120, 0.3)
            for row, delay in zip(request_rows(flights, spec), flights["dep_delay"]):
                answer = client.post(f"/models/{LOGGED}/predict", json=row)
                assert answer.status_code == 200, answer.text
                [prediction] = answer.json()["predictions"]
                answered.append((prediction["id"], prediction["score"], float(delay)))
                if sum(canary.in_log_sample(i, LOGGED, share) for i, _, _ in answered) == batch_rows + remainder_rows:
                    break
            [sample] = wait_for(lambda: storage.list_objects(sample_prefix, settings=settings), "the log's sample batch", 30)
    sampled = [i for i, _, _ in answered if canary.in_log_sample(i, LOGGED, share)]
    assert len(sampled) == batch_rows + remainder_rows, "too few flights to fill the sample"
    [remainder] = storage.list_objects(prediction_log.kept_log_prefix(LOGGED, prediction_log.REMAINDER, settings), settings=settings)
    logged = storage.read_table(sample.uri, settings)[0]
    kept = storage.read_table(remainder.uri, settings)[0]
    assert len(logged) == batch_rows and len(kept) == remainder_rows
    assert set(logged[prediction_log.PREDICTION_ID]) | set(kept[prediction_log.PREDICTION_ID]) == set(sampled)
    assert storage.list_objects(sample_prefix, settings=settings) == [sample]  # one batch routed, the remainder not

    # Labels arrive for every answer but the last few sampled ones; the unsampled ones cannot be joined.
    unlabelled = set(sampled[-unlabelled_rows:])
    labels = pd.DataFrame([{"prediction_id": i, "dep_delay": d} for i, _, d in answered if i not in unlabelled])
    labels_key = f"{settings.s3_incoming_prefix}{LOGGED}/_predictions/labels/{UID}.parquet"
    labels_uri = storage.write_table(labels, f"s3://{settings.s3_bucket}/{labels_key}", settings)
    joined = [(score, delay > 15) for i, score, delay in answered if i in set(sampled) - unlabelled]

    checks = {}
    for uri in (sample.uri, labels_uri):
        [run] = finished_runs(api, deployed["drift-monitor/on-new-batch"], timeout=240, key=storage.split_s3_uri(uri)[1])
        assert run["state_name"] == "Completed", run["state"]
        mark = manifest.read_mark(uri, storage.stat(uri, settings).etag, settings)
        [checked] = wait_for(lambda uri=uri: [e for e in read_events(api, events.DRIFT_CHECKED, events.model_resource_id(LOGGED))
                                               if e["payload"]["batch_uri"] == uri], f"leanops.drift.checked naming {uri}")
        assert checked["payload"]["status"] == mark.status and mark.status in {"ok", "drift"}, (checked, mark)
        checks[uri] = (run, drift_log.drift_check_metrics(LOGGED, uri, settings))
    assert checks[sample.uri][1]["n_current"] == batch_rows and "batch_roc_auc" not in checks[sample.uri][1]  # no labels yet

    # The performance check scored the champion on the joined rows: the labels beside the scores the endpoint answered.
    labels_run, metrics = checks[labels_uri]
    assert metrics["n_current"] == len(joined) == batch_rows + remainder_rows - unlabelled_rows
    assert metrics["batch_roc_auc"] == pytest.approx(roc_auc_score([y for _, y in joined], [s for s, _ in joined]), abs=1e-9)
    line = f"labels {labels_uri}: {len(joined)} of {len(labels)} prediction ids joined to the logged sample"

    def run_log() -> list[str]:
        body = {"logs": {"flow_run_id": {"any_": [labels_run["id"]]}}, "limit": 200}
        return [entry["message"] for entry in prefect_request("POST", f"{api}/logs/filter", json=body).json()]

    wait_for(lambda: line in run_log(), f"the run's log line {line!r}")


def test_reconcile_announces_only_batches_no_check_processed(deployed, worker, settings):
    """A bucket without notifications stands in for lost ones: its objects never reach the bridge."""
    from flows.reconcile import reconcile

    api = settings.resolved_prefect_api_url
    bucket = f"lost-{UID}"
    storage.ensure_bucket(bucket, settings)
    done_uri = f"s3://{bucket}/incoming/{LANDED}/2013-07.parquet"
    lost_key = f"incoming/{LANDED}/2013-08 lost été.parquet"
    lost_uri = f"s3://{bucket}/{lost_key}"
    for uri in (done_uri, lost_uri):
        storage.write_bytes(uri, f"PAR1 {uri}".encode(), settings)
    storage.write_bytes(f"s3://{bucket}/incoming/{LANDED}/notes.txt", b"not a batch", settings)
    manifest.mark_processed(done_uri, LANDED, "ok", settings=settings)

    announced = reconcile(prefix=f"s3://{bucket}/incoming/", min_age_minutes=0)

    assert announced == [lost_uri]
    [run] = finished_runs(api, deployed["drift-monitor/on-new-batch"], timeout=90, bucket=bucket)
    assert run["parameters"]["key"] == lost_key and run["state_name"] == "Completed"
    info = storage.stat(lost_uri, settings)
    assert manifest.read_mark(lost_uri, info.etag, settings).status == "no_champion"
    [event] = api_call(api, "POST", "/events/filter", {"filter": {"resource": {"id": [lost_uri]}}}).json()["events"]
    assert event["id"] == events.batch_landed(bucket, lost_key, None, None, info.size, info.etag).event_id
    # Processed now: the next pass has nothing to announce.
    assert reconcile(prefix=f"s3://{bucket}/incoming/", min_age_minutes=0) == []


def test_the_scheduler_starts_each_due_model_once_and_skips_retired_ones(deployed, worker, specs_dir, settings):
    """Two specs whose cron came due, one retired model: two scheduler passes (every few minutes, each sees
    the same due time) start one retrain per active model, nothing for the retired one, with no
    deployment of their own: prefect.yaml names no model."""
    from flows.schedule import schedule
    from leanops import retirement
    from leanops.settings import reset_settings_cache

    api = settings.resolved_prefect_api_url
    retirement.retire(RETIRED, reason="replaced by a better model")
    os.environ["LEANOPS_SPECS_DIR"] = str(specs_dir)
    reset_settings_cache()
    try:
        first = schedule(lookback_minutes=60)
        second = schedule(lookback_minutes=60)
    finally:
        del os.environ["LEANOPS_SPECS_DIR"]
        reset_settings_cache()

    assert len(first) == 2 and sorted(second) == sorted(first)
    deployment = deployed["retrain/on-schedule"]
    for name in (DUE, ALSO_DUE):
        [run] = finished_runs(api, deployment, timeout=420, spec=name)
        assert run["parameters"] == {"spec": name, "reason": "schedule"}
        assert run["idempotency_key"] == f"leanops-schedule-{name}-{DUE_AT:%Y%m%dT%H%MZ}"
        assert run["state_name"] == "Completed", run["state"]
        assert len(registry.list_versions(name)) == 1
    assert runs_of(api, deployment, spec=RETIRED) == []
