"""Scenario 5: the same thing asked for many times, or twice at once, is done once.

Through the real path: prefect.yaml deployed with `prefect deploy --all`, the S3 bridge reading moto's SQS,
the deployments' triggers, and a process worker running the flows (fixtures ``deployed`` and ``worker`` in
tests/conftest.py). Five deliveries of one S3 notification start one drift check; a storm of 20 drift
events in 10 s trains one challenger (and a second model's event in the storm is not lost); a scheduled
and a drift-triggered retrain of one model at once both train and register one version.

The test that needs no worker comes first and deletes the runs it made, so no worker ever executes them.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from datetime import datetime, timezone
from itertools import groupby

import pytest

from leanops import datasets, events, registry, storage
from leanops.bridge import event_document
from support import (
    SETTLE, api_call, delete_runs, finished_runs, s3_notification, sample_drift_result, settled_runs, spec_copy,
    task_run_states,
)

pytestmark = pytest.mark.e2e

UID = uuid.uuid4().hex[:6]
LANDED, STORM, SECOND, BOTH = f"dup-landed-{UID}", f"dup-storm-{UID}", f"dup-second-{UID}", f"dup-both-{UID}"
# Small but real: 2,000 flights and 60 trees train in a second or two. The flights spec's one-minute
# cooldown (tuned for the demo) could lapse mid-test on a busy machine: an hour here, except for BOTH,
# whose drift retrain must not be turned away by the cooldown (it has to race the scheduled one).
SMALL_MODEL = {"model__params__n_estimators": 60, "retrain_window__cooldown_minutes": 60, "schedule__cron": None}


@pytest.fixture(scope="module")
def specs_dir(stack, tmp_path_factory):
    """Spec copies the worker finds by model name, with their training windows in the bucket (outside the
    watched prefix, so writing them announces nothing)."""
    folder = tmp_path_factory.mktemp("duplicate-specs")
    frame = datasets.flights_sample(range(1, 5), rows_per_month=500, seed=5)
    for name in (STORM, SECOND, BOTH):
        cooldown = {"retrain_window__cooldown_minutes": 0} if name == BOTH else {}
        spec_copy(folder, name, retrain_window__prefix=f"windows/{name}/", **{**SMALL_MODEL, **cooldown})
        storage.write_table(frame, f"s3://{stack.s3_bucket}/windows/{name}/2013-01-04.parquet")
    spec_copy(folder, LANDED, schedule__cron=None)
    return folder


def drift_event(settings, model: str, i: int) -> dict:
    """A leanops.drift.detected document as a drift check of batch ``i`` sends it (distinct ids)."""
    batch_uri = f"s3://{settings.s3_bucket}/incoming/{model}/batch-{i}.parquet"
    drift = events.drift_detected(model, "1", batch_uri, f"fingerprint-{i}", sample_drift_result(), "", "1 of the last 1 checks")
    return event_document(drift)


def test_five_deliveries_of_one_notification_start_one_drift_check(deployed, s3_bridge, settings, record):
    row = record("5 one S3 notification delivered x5", "the same SQS message sent 5 times")
    api = settings.resolved_prefect_api_url
    queue_url, _ = s3_bridge
    key = f"incoming/{LANDED}/redelivered {UID}.parquet"
    body = s3_notification(settings.s3_bucket, key)
    sent_at = time.monotonic()

    for _ in range(5):
        storage.send_message(queue_url, body, settings)

    runs = settled_runs(api, deployed["drift-monitor/on-new-batch"], key=key)
    delete_runs(api, runs)
    assert len(runs) == 1
    row.survived, row.data_lost = True, "none (1 drift-monitor run, 4 duplicates dropped)"
    row.recover_seconds = time.monotonic() - sent_at


def test_a_storm_of_drift_events_trains_one_challenger(deployed, worker, settings, record):
    """20 leanops.drift.detected for one model within 10 s (distinct ids, as separate checks send them),
    then one for a second model that is in its cooldown: its retrain must not be lost in the storm."""
    from prefect.variables import Variable

    row = record("5 drift-event storm, x20 in 10 s (+1 other model)", "20 drift events for one model, 0.45 s apart")
    api = settings.resolved_prefect_api_url
    Variable.set(f"leanops-last-retrain-{SECOND}", datetime.now(timezone.utc).isoformat(), overwrite=True)
    started = time.monotonic()
    for i, model in enumerate([STORM] * 20 + [SECOND]):
        api_call(api, "POST", "/events", [drift_event(settings, model, i)])
        time.sleep(0.45)
    emitted_in = time.monotonic() - started

    storm = finished_runs(api, deployed["retrain/on-drift"], timeout=300, spec=STORM)
    second = finished_runs(api, deployed["retrain/on-drift"], timeout=120, spec=SECOND)
    time.sleep(SETTLE)  # a run the trigger created late would show now
    storm = finished_runs(api, deployed["retrain/on-drift"], timeout=120, spec=STORM)

    states = api_call(api, "GET", f"/flow_run_states/?flow_run_id={second[0]['id']}").json()
    history = [f"{name} x{len(list(group))}" for name, group in groupby(s["name"] for s in states)]
    print(f"\nstorm: 21 events in {emitted_in:.1f} s -> {len(storm)} {STORM} run(s) "
          f"{Counter(r['state_name'] for r in storm)}, {len(second)} {SECOND} run(s) with states {history}")
    assert len(storm) == 1 and storm[0]["state_name"] == "Completed"
    assert len(second) == 1 and second[0]["state_name"] == "Completed"
    # The storm's run trained; the second model's stopped at its claim (fit_model absent, asserted below).
    storm_tasks = task_run_states(api, storm[0]["id"], expect=("claim_retrain", "fit_model"))
    second_tasks = task_run_states(api, second[0]["id"], expect=("claim_retrain",))
    assert storm_tasks["fit_model"] == "Completed"
    assert len(registry.list_versions(STORM)) == 1
    # The second model's event got its own run, which the cooldown turned away before any training.
    assert second_tasks["claim_retrain"] == "Completed" and "fit_model" not in second_tasks
    row.survived, row.data_lost = True, "none (1 retrain; the other model's event kept)"
    row.recover_seconds = time.monotonic() - started


def test_a_scheduled_and_a_drift_retrain_of_one_model_at_once_register_one_version(deployed, worker, settings, record):
    """retrain/on-schedule and retrain/on-drift have separate concurrency limits, so both run at once on the
    same window (BOTH has no cooldown): the model's lock and the training key at registration, or the retrain
    key found before reading, leave one version."""
    row = record("5 weekly and drift retrain of one model at once", "retrain/on-schedule run + drift event, same moment")
    api = settings.resolved_prefect_api_url
    started = time.monotonic()
    api_call(api, "POST", f"/deployments/{deployed['retrain/on-schedule']}/create_flow_run", {"parameters": {"spec": BOTH}})
    api_call(api, "POST", "/events", [drift_event(settings, BOTH, 0)])

    scheduled = finished_runs(api, deployed["retrain/on-schedule"], timeout=300, spec=BOTH)
    drifted = finished_runs(api, deployed["retrain/on-drift"], timeout=300, spec=BOTH)
    runs = scheduled + drifted
    spans = sorted((r["start_time"], r["end_time"]) for r in runs)
    print(f"\nweekly + drift: {[r['state_name'] for r in runs]}, overlapping: {spans[0][1] > spans[-1][0]}")
    assert [r["state_name"] for r in runs] == ["Completed", "Completed"]
    # Overlapping runs both train and meet at registration. A run that starts once the other has registered
    # (the drift event can land seconds late on a loaded machine) finds that version by its retrain key
    # without reading the batch; one that starts after the other's fit was persisted reuses it from the
    # cache. Either way one of them trained, and each ended with the same version.
    trained = []
    for run in runs:
        tasks = task_run_states(api, run["id"], expect=("find_registered_retrain",))
        if "fit_model" in tasks:
            assert tasks["fit_model"] in ("Completed", "Cached") and tasks["register_model"] == "Completed", tasks
            trained.append(tasks["fit_model"])
        else:
            assert tasks["find_registered_retrain"] == "Completed" and "register_model" not in tasks, tasks
    assert "Completed" in trained, [task_run_states(api, r["id"]) for r in runs]
    versions = registry.list_versions(BOTH)
    assert [v.version for v in versions] == ["1"] and versions[0].registration_complete
    assert registry.alias_version(BOTH, registry.CHALLENGER) == "1"
    row.survived, row.data_lost = True, f"none (2 retrains, {len(trained)} trained, 1 version)"
    row.recover_seconds = time.monotonic() - started
