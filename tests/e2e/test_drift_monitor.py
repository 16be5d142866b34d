"""The drift-monitor flow end to end: a real Prefect server, a real MLflow server, moto's S3, and a
real HTTP server on 127.0.0.1 standing in for Slack's Web API.

The champion is trained once by the real retrain flow on 6,000 flights of January-June 2013. Its
reference is its training data (time-ordered split: January 1 to May 25; the holdout is the most
recent 20%). Measured with this champion (2,500-flight batches):
- July drifts (temp and dewp move by about two reference stds, dest by JS 0.1) and its prediction
  scores move 0.21 against its scores on its holdout, rows it did not train on (in-sample scores made
  it 0.85): under the spec's prediction threshold (0.35);
- flights of the reference period it never saw move no feature (largest effect: dest, 0.08), and
  flights of the holdout period it never saw do not move its predictions (0.04);
- its holdout ROC AUC is 0.71; on November it scores 0.66: worse by 0.046, inside the spec's
  tolerance (0.05), beyond a tolerance of 0.02.
"""

from __future__ import annotations

import os
import re
import socket
import time

import pandas as pd
import pytest

from leanops import datasets, drift, events, monitoring, registry, storage
from leanops.errors import BatchReadError, ContractViolation
from leanops.spec import load_spec
from reliability.proxy import TcpProxy, shut_down
from support import artifacts_of, environment, read_events, spec_copy, task_run_states, task_started_at

pytestmark = pytest.mark.e2e

MODEL = "drift-e2e"
WEATHER = {"temp", "dewp"}
SLACK_TOKEN = "xoxb-drift-e2e"


@pytest.fixture(scope="module")
def champion(stack, tmp_path_factory):
    """A champion trained by the real retrain flow; the specs folder holds its spec under its own name."""
    from flows.retrain import retrain

    specs = tmp_path_factory.mktemp("drift-monitor-specs")
    spec_path = spec_copy(specs, MODEL)
    training = datasets.flights_sample(range(1, 7), rows_per_month=1000, seed=3)
    uri = storage.write_table(training, f"s3://{stack.s3_bucket}/training/{MODEL}/2013-h1.parquet")
    registration = retrain(spec=str(spec_path), batch_uri=uri)
    registry.set_alias(MODEL, registry.CHAMPION, registration.version)
    info = registry.get_champion(MODEL)
    reference = registry.load_reference_sample(info)
    return {"spec_path": spec_path, "specs": specs, "info": info, "training": training, "reference": reference}


def put(frame: pd.DataFrame, bucket: str, key: str) -> str:
    return storage.write_table(frame, f"s3://{bucket}/{key}")


def month(number: int, rows: int = 2500, seed: int = 5) -> pd.DataFrame:
    return datasets.flights_sample([number], rows_per_month=rows, seed=seed)


def run(**parameters):
    from flows.drift_monitor import drift_monitor

    return drift_monitor(**parameters, return_state=True)


def batch_events(api_url: str, name: str, batch_uri: str, count: int = 1, timeout: float = 20.0, model: str = MODEL) -> list[dict]:
    """The model's events of one kind about one batch, polled until ``count`` are stored or ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        found = [e for e in read_events(api_url, name, events.model_resource_id(model)) if e["payload"].get("batch_uri") == batch_uri]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def test_a_summer_month_drifts_with_events_history_report_and_artifacts(champion, stack):
    api = stack.resolved_prefect_api_url
    uri = put(month(7), stack.s3_bucket, f"checks/{MODEL}/2013-07.parquet")

    state = run(spec=str(champion["spec_path"]), batch_uri=uri)

    outcome = state.result()
    assert (outcome.model, outcome.batch_uri, outcome.status) == (MODEL, uri, "drift")
    assert outcome.drift_detected and not outcome.degraded
    assert outcome.champion_version == champion["info"].version
    result = outcome.drift
    assert WEATHER <= set(result.drifted_features) and result.dataset_drift
    assert 0.1 < result.prediction_drift_score < result.prediction_drift_threshold and not result.prediction_drift
    assert result.performance is not None and not result.performance.degraded

    checked = batch_events(api, events.DRIFT_CHECKED, uri)
    detected = batch_events(api, events.DRIFT_DETECTED, uri)
    assert len(checked) == 1 and len(detected) == 1
    for event in checked + detected:
        payload = event["payload"]
        assert payload["status"] == "drift" and payload["version"] == outcome.champion_version
        assert payload["drift_share"] == pytest.approx(result.drift_share)
        assert payload["drifted_features"] == ",".join(result.drifted_features)
        assert payload["report_url"] == result.report_html_uri
    assert detected[0]["payload"]["persistence"] == "1 of the last 1 checks"

    history = drift.read_history(monitoring.history_uri(MODEL))
    row = history[history["batch_uri"] == uri]
    assert len(row) == 1 and row.iloc[0]["status"] == "drift" and row.iloc[0]["version"] == outcome.champion_version

    # The Evidently report lives in an MLflow monitoring run; result.report_json_uri is runs:/<id>/drift/report.json.
    run_id = result.report_json_uri.split("/")[1]
    mlflow_run = registry.client().get_run(run_id)
    assert mlflow_run.data.tags["leanops.batch_uri"] == uri and mlflow_run.data.tags["leanops.drift_status"] == "drift"
    assert {a.path for a in registry.client().list_artifacts(run_id, "drift")} == {"drift/report.html", "drift/report.json"}
    assert result.report_html_uri.startswith(stack.resolved_mlflow_tracking_uri) and run_id in result.report_html_uri
    assert mlflow_run.info.status == "FINISHED" and mlflow_run.data.tags["leanops.report_current_rows"] == "2500"

    # The verdict's events left before the report was started: Evidently's cost never delays them.
    report_started = task_started_at(api, state.state_details.flow_run_id, "attach_drift_report")
    assert max(pd.Timestamp(e["occurred"]) for e in checked + detected) < pd.Timestamp(report_started)

    artifacts = artifacts_of(api, state.state_details.flow_run_id)
    assert {f"{MODEL}-drift-report", f"{MODEL}-drift-features", f"{MODEL}-drift-summary"} <= set(artifacts)
    assert result.report_html_uri in artifacts[f"{MODEL}-drift-report"]["data"]
    assert artifacts[f"{MODEL}-drift-features"]["type"] == "table"
    assert "**Drift status: drift**" in artifacts[f"{MODEL}-drift-summary"]["data"]


def test_unseen_flights_like_each_reference_do_not_drift_against_it(champion, stack):
    """Features are compared with the training rows (January to May 24); predictions with the champion's
    scores on its holdout (the most recent 20%), rows it did not train on, like any new batch's."""
    reference, training = champion["reference"], champion["training"]
    flights = datasets.flights(range(1, 7))
    seen = pd.MultiIndex.from_frame(flights[["time_hour", "carrier", "flight"]]).isin(
        pd.MultiIndex.from_frame(training[["time_hour", "carrier", "flight"]])
    )
    unseen = flights[~seen]
    holdout_start = registry.load_holdout(champion["info"])["time_hour"].min()
    like_training = unseen[unseen["time_hour"].between(reference["time_hour"].min(), reference["time_hour"].max())]
    like_holdout = unseen[unseen["time_hour"] >= holdout_start]

    def check(frame: pd.DataFrame, name: str):
        uri = put(frame.sample(n=2500, random_state=4).sort_values("time_hour"), stack.s3_bucket, f"checks/{MODEL}/{name}.parquet")
        return run(spec=str(champion["spec_path"]), batch_uri=uri).result().drift

    features_side, predictions_side = check(like_training, "2013-h1-held-back"), check(like_holdout, "2013-06-held-back")

    assert features_side.drifted_features == () and not features_side.dataset_drift
    assert predictions_side.prediction_drift is False and predictions_side.prediction_drift_score < 0.1


def test_a_model_without_champion_is_reported_not_checked(champion, stack, tmp_path):
    uri = put(month(7, rows=600), stack.s3_bucket, "checks/drift-e2e-none/2013-07.parquet")

    state = run(spec=str(spec_copy(tmp_path, "drift-e2e-none")), batch_uri=uri)

    assert state.is_completed()
    outcome = state.result()
    assert (outcome.status, outcome.champion_version, outcome.drift) == ("no_champion", None, None)
    summary = artifacts_of(stack.resolved_prefect_api_url, state.state_details.flow_run_id)["drift-e2e-none-drift-summary"]
    assert "No champion for drift-e2e-none" in summary["data"]
    states = task_run_states(stack.resolved_prefect_api_url, state.state_details.flow_run_id, expect=("note_no_champion", "mark_processed"))
    assert "load_batch" not in states and "compute_drift" not in states


def test_a_batch_below_min_rows_is_inconclusive(champion, stack):
    api = stack.resolved_prefect_api_url
    small = month(8, rows=1200)  # passes the contract (500 rows), below drift.min_rows (2,000)
    uri = put(small, stack.s3_bucket, f"checks/{MODEL}/2013-08-small.parquet")

    state = run(spec=str(champion["spec_path"]), batch_uri=uri)

    outcome = state.result()
    assert outcome.status == "inconclusive" and not outcome.drift_detected and not outcome.degraded
    assert "current batch has 1,200 rows, fewer than drift.min_rows=2000" in outcome.drift.reason
    assert outcome.drift.features == () and outcome.drift.report_html_uri is None
    checked = batch_events(api, events.DRIFT_CHECKED, uri)
    assert len(checked) == 1 and checked[0]["payload"]["status"] == "inconclusive"
    assert batch_events(api, events.DRIFT_DETECTED, uri, timeout=2) == []
    history = drift.read_history(monitoring.history_uri(MODEL))
    assert list(history.loc[history["batch_uri"] == uri, "status"]) == ["inconclusive"]


def test_a_batch_breaking_its_contract_fails_the_run_and_alerts(champion, stack, slack):
    api = stack.resolved_prefect_api_url
    bad = month(7).assign(origin=lambda f: f["origin"].where(f.index % 100 != 0, "PHL"))
    uri = put(bad, stack.s3_bucket, f"checks/{MODEL}/2013-07-unknown-origin.parquet")

    with environment(LEANOPS_SLACK_TOKEN=SLACK_TOKEN, LEANOPS_SLACK_BASE_URL=slack.base_url):
        state = run(spec=str(champion["spec_path"]), batch_uri=uri)

    assert state.is_failed()
    with pytest.raises(ContractViolation, match="origin.*PHL"):
        state.result()
    states = task_run_states(api, state.state_details.flow_run_id, expect=("validate_batch",))
    assert states["validate_batch"] == "Failed" and "compute_drift" not in states
    (alert,) = slack.posts()
    assert alert["blocks"][0]["text"]["text"].startswith(f":no_entry: {MODEL}: drift-monitor: batch rejected by its data contract")
    assert uri in str(alert["blocks"])
    assert batch_events(api, events.DRIFT_CHECKED, uri, timeout=2) == []


def test_a_landed_key_names_the_model(champion, stack):
    key = f"incoming/{MODEL}/2013-10.parquet"
    uri = put(month(10), stack.s3_bucket, key)

    with environment(LEANOPS_SPECS_DIR=str(champion["specs"])):
        outcome = run(bucket=stack.s3_bucket, key=key).result()
        unnamed = run(bucket=stack.s3_bucket, key="incoming/2013-10.parquet")

    assert (outcome.model, outcome.batch_uri, outcome.status) == (MODEL, uri, "drift")
    assert outcome.champion_version == champion["info"].version
    assert unnamed.is_failed()
    with pytest.raises(BatchReadError, match="cannot tell which model"):
        unnamed.result()


def test_a_champion_scoring_worse_than_its_holdout_is_degraded(champion, stack, tmp_path):
    api = stack.resolved_prefect_api_url
    strict = spec_copy(tmp_path, MODEL, drift__performance_tolerance=0.02)  # same model, tighter tolerance
    uri = put(month(11), stack.s3_bucket, f"checks/{MODEL}/2013-11.parquet")

    outcome = run(spec=str(strict), batch_uri=uri).result()

    performance = outcome.drift.performance
    assert outcome.degraded and performance.degraded and performance.metric == "roc_auc"
    holdout = champion["info"].metrics["roc_auc"]
    assert performance.reference_value == pytest.approx(holdout)
    assert performance.value < holdout - 0.02 and performance.n_rows > 2000
    (degraded,) = batch_events(api, events.MODEL_DEGRADED, uri)
    assert degraded["payload"]["value"] == pytest.approx(performance.value)
    assert degraded["payload"]["reference_value"] == pytest.approx(holdout)
    assert degraded["payload"]["version"] == champion["info"].version


def test_drift_alerts_reach_slack_once_within_the_cooldown_after_a_429(champion, stack, slack):
    from leanops.notify import Notifier

    slack.script.append((429, {"Retry-After": "1"}, {"ok": False, "error": "ratelimited"}, 0.0))
    august = put(month(8), stack.s3_bucket, f"checks/{MODEL}/2013-08.parquet")
    september = put(month(9), stack.s3_bucket, f"checks/{MODEL}/2013-09.parquet")

    with environment(LEANOPS_SLACK_TOKEN=SLACK_TOKEN, LEANOPS_SLACK_BASE_URL=slack.base_url):
        Notifier().resolve(MODEL, "drift")  # a new top-level thread, whatever earlier tests sent
        first = run(spec=str(champion["spec_path"]), batch_uri=august).result()
        second = run(spec=str(champion["spec_path"]), batch_uri=september).result()

    assert first.drift_detected and second.drift_detected
    posts = slack.posts()
    assert len(posts) == 2  # the refused attempt and its retry; September falls in the cooldown
    assert posts[0] == posts[1] and "thread_ts" not in posts[0]
    header = posts[0]["blocks"][0]["text"]["text"]
    assert header == f":warning: {MODEL}: Drift detected in 2013-08.parquet against champion v{champion['info'].version}"
    fields = {f["text"].split("\n")[0]: f["text"].split("\n", 1)[1] for f in posts[0]["blocks"][1]["fields"]}
    assert fields["*Drifted features*"] == ", ".join(first.drift.drifted_features)
    assert slack.requests[0]["headers"]["Authorization"] == f"Bearer {SLACK_TOKEN}"
    assert first.drift.report_html_uri in str(posts[0]["blocks"])


def test_checks_finishing_together_all_reach_the_drift_history(stack, spec):
    """Batches that land together are checked side by side; the history is one object read and then
    rewritten, so without the model's lock a check would drop the rows of those finishing with it."""
    import uuid

    from prefect import flow
    from prefect.task_runners import ThreadPoolTaskRunner

    from leanops.results import Batch
    from support import sample_drift_result
    from tasks.monitor import record_drift_check

    model = f"history-race-{uuid.uuid4().hex[:6]}"
    model_spec = spec.model_copy(update={"name": model})
    champion = registry.ModelVersionInfo(name=model, version="1", run_id="-", model_uri="-", source="-")
    batches = [
        Batch(uri=f"s3://{stack.s3_bucket}/incoming/{model}/{i}.parquet", fingerprint=str(i), frame=pd.DataFrame())
        for i in range(6)
    ]

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=6))
    def check_side_by_side() -> None:
        futures = [record_drift_check.submit(sample_drift_result(), batch, champion, model_spec) for batch in batches]
        for future in futures:
            future.result()

    check_side_by_side()

    history = drift.read_history(monitoring.history_uri(model))
    assert sorted(history["batch_uri"]) == sorted(batch.uri for batch in batches)


def test_mlflow_down_fails_the_check_loudly_and_leaves_the_batch_for_reconciliation(champion, stack, slack):
    """An outage is no "no champion": the check retries, fails, tells Slack, and the batch stays unprocessed."""
    import socket

    from leanops import manifest
    from leanops.errors import RegistryUnavailable

    with socket.socket() as sock:  # a port nothing listens on: MLflow is down
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    uri = put(month(7, rows=600), stack.s3_bucket, f"checks/{MODEL}/2013-07-during-an-outage.parquet")

    with environment(LEANOPS_MLFLOW_TRACKING_URI=dead, LEANOPS_MLFLOW_HTTP_RETRIES="0",
                     LEANOPS_SLACK_TOKEN=SLACK_TOKEN, LEANOPS_SLACK_BASE_URL=slack.base_url):
        state = run(spec=str(champion["spec_path"]), batch_uri=uri)

    assert state.is_failed()
    with pytest.raises(RegistryUnavailable, match="unreachable or failing"):
        state.result()
    states = task_run_states(stack.resolved_prefect_api_url, state.state_details.flow_run_id)
    assert "note_no_champion" not in states and "mark_processed" not in states
    assert manifest.read_mark(uri, manifest.identity_of(storage.stat(uri))) is None
    (alert,) = slack.posts()
    assert "drift-monitor run" in alert["blocks"][0]["text"]["text"] and "RegistryUnavailable" in str(alert["blocks"])


def test_a_batch_landed_before_its_spec_is_checked_once_the_spec_exists(champion, stack, tmp_path):
    """Not marked processed when its spec is missing: the reconciliation announces it once the spec is added."""
    from datetime import timedelta

    from leanops import manifest
    from leanops.errors import SpecError

    model = f"late-spec-{os.getpid()}-{int(time.time())}"
    key = f"incoming/{model}/2013-07.parquet"
    uri = put(month(7, rows=600), stack.s3_bucket, key)
    specs = tmp_path / "specs"
    specs.mkdir()

    def announced() -> list[str]:
        listed = manifest.find_unprocessed(f"s3://{stack.s3_bucket}/incoming/{model}/", ".parquet", timedelta(0))
        return [o.uri for o in listed]

    with environment(LEANOPS_SPECS_DIR=str(specs)):
        state = run(bucket=stack.s3_bucket, key=key)
        assert state.is_failed()
        with pytest.raises(SpecError, match="no model spec"):
            state.result()
        assert manifest.read_mark(uri, manifest.identity_of(storage.stat(uri))) is None
        assert announced() == []  # waiting for its spec: announcing it would only fail again

        spec_copy(specs, model)
        assert announced() == [uri]


class RefusesDriftReports(TcpProxy):
    """MLflow behind a proxy that answers the upload of a drift report's HTML with 413, as an nginx with its
    default 1 MB body limit answers a report of a few MB; every other request passes through."""

    def _forward(self, client, upstream) -> None:
        try:
            # A kept-alive connection sends its next request only after the last answer: a request starts a chunk.
            while chunk := client.recv(65536):
                if chunk.startswith(b"PUT ") and b"drift/report.html" in chunk.split(b"\r\n", 1)[0]:
                    head, _, body = chunk.partition(b"\r\n\r\n")
                    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
                    while len(body) < length and (more := client.recv(65536)):
                        body += more  # read it all, as nginx does, so the client reads the answer
                    client.sendall(b"HTTP/1.1 413 Request Entity Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    break
                upstream.sendall(chunk)
        except OSError:
            pass
        shut_down(client, upstream)
        client.close()
        upstream.close()


def test_a_report_that_cannot_be_attached_fails_the_run_loudly_and_the_verdict_stands(champion, stack, slack):
    """The report comes after the verdict: when MLflow refuses it, the events, history, processed mark and
    drift alert are already out; the run fails, Slack hears why, and the check's MLflow run says so."""
    from leanops import manifest
    from leanops.errors import DriftReportError

    api = stack.resolved_prefect_api_url
    key = f"incoming/{MODEL}/2013-08-report-refused.parquet"
    uri = put(month(8, seed=9), stack.s3_bucket, key)
    proxy = RefusesDriftReports(stack.host, stack.mlflow_port)
    try:
        with environment(LEANOPS_MLFLOW_TRACKING_URI=proxy.url, LEANOPS_SLACK_TOKEN=SLACK_TOKEN,
                         LEANOPS_SLACK_BASE_URL=slack.base_url, LEANOPS_ALERT_COOLDOWN_MINUTES="0"):
            state = run(spec=str(champion["spec_path"]), batch_uri=uri)
    finally:
        proxy.close()

    assert state.is_failed()
    with pytest.raises(DriftReportError, match=r"413.*the verdict \(drift\) was recorded and announced before and stands"):
        state.result()
    (checked,) = batch_events(api, events.DRIFT_CHECKED, uri)
    (detected,) = batch_events(api, events.DRIFT_DETECTED, uri)
    assert checked["payload"]["status"] == detected["payload"]["status"] == "drift"
    run_id = checked["payload"]["report_url"].split("/runs/")[1].split("/")[0]
    history = drift.read_history(monitoring.history_uri(MODEL))
    assert list(history.loc[history["batch_uri"] == uri, "status"]) == ["drift"]
    assert manifest.read_mark(uri, manifest.identity_of(storage.stat(uri))).status == "drift"
    drift_post, failure_post = slack.posts()
    assert "Drift detected in 2013-08-report-refused.parquet" in drift_post["blocks"][0]["text"]["text"]
    assert "drift-monitor run" in failure_post["blocks"][0]["text"]["text"] and "DriftReportError" in str(failure_post["blocks"])
    mlflow_run = registry.client().get_run(run_id)
    assert mlflow_run.info.status == "FAILED" and "413" in mlflow_run.data.tags["leanops.report_error"]
    assert mlflow_run.data.metrics["drift_share"] == pytest.approx(checked["payload"]["drift_share"])
