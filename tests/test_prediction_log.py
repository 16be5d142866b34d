"""The prediction log: a uniform sample drift-monitor checks, an inspection stream it never sees, labels
joined by prediction id for the performance check, retention, and nothing of it in a retrain window.
Real objects in moto's S3 (the session's endpoint), real flights."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import pandas as pd
import pytest
from support import environment, s3_notification, spec_copy

from leanops import batches, bridge, contract, features, modeling, monitoring, prediction_labels, prediction_log, storage
from leanops.errors import BatchReadError, ContractViolation
from leanops.results import Batch
from leanops.settings import Settings
from leanops.spec import RetrainWindowSpec, Spec, load_spec


@dataclass(frozen=True)
class Answered:
    """What the endpoint hands its prediction sink for one scored row (leanops.serving.extensions.PredictionRecord)."""

    prediction_id: str
    version: str
    alias: str
    received_at: float
    row: dict[str, Any]
    score: float
    shadow: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def request_rows(frame: pd.DataFrame, spec: Spec) -> list[dict[str, Any]]:
    """Rows as a client posts them: the model's inputs, times as ISO text."""
    inputs = frame[features.model_input_columns(spec)].copy()
    inputs["time_hour"] = inputs["time_hour"].map(lambda t: t.isoformat())
    return inputs.astype(object).where(inputs.notna(), None).to_dict(orient="records")


def answered(frame: pd.DataFrame, spec: Spec, scores, version: str = "1", alias: str = "champion", shadow: bool = False) -> list[Answered]:
    now = datetime.now(timezone.utc).timestamp()
    return [Answered(str(uuid.uuid4()), version, alias, now, row, float(s), shadow)
            for row, s in zip(request_rows(frame, spec), scores)]


@pytest.fixture
def log_spec(tmp_path) -> Spec:
    return load_spec(spec_copy(
        tmp_path, f"plog-{uuid.uuid4().hex[:8]}", contract__min_rows=200, drift__min_rows=300,
        serving={"log_sample_share": 0.5, "low_confidence_below": 0.6},
    ))


@pytest.fixture
def bucket(s3_endpoint, settings) -> Settings:
    storage.ensure_bucket(settings.s3_bucket, settings)
    return settings


def test_the_sample_lands_where_drift_monitor_reads_it_as_a_batch_its_contract_accepts(bucket, log_spec, flights_small):
    settings = bucket
    log = prediction_log.PredictionLog(log_spec, settings)
    records = answered(flights_small.head(1000), log_spec, np.linspace(0.05, 0.3, 1000))
    log.offer(records)
    written = log.flush()
    assert prediction_log.sample_batch_rows(log_spec) == 300
    sampled = [uri for uri in written if "/_predictions/sample/" in uri]
    assert len(sampled) >= 1 and all(uri.endswith(".parquet") for uri in sampled)
    routed = bridge.ObjectFilter.of(prefix=settings.s3_incoming_prefix, suffix=settings.s3_incoming_suffix)
    ids = {r.prediction_id for r in records}
    logged_ids: set[str] = set()
    for uri in sampled:
        bucket_name, key = storage.split_s3_uri(uri)
        assert len(bridge.translate(s3_notification(bucket_name, key), routed)) == 1
        assert monitoring.model_from_key(key, settings.s3_incoming_prefix) == log_spec.name
        frame, fingerprint = storage.read_table(uri, settings)
        assert len(frame) == 300
        contract.validate_batch(frame, log_spec, uri, fingerprint, logged=True)
        with pytest.raises(ContractViolation, match="missing column 'dep_delay'"):
            contract.validate_batch(frame, log_spec, uri, fingerprint)
        logged_ids |= set(frame[prediction_log.PREDICTION_ID])
    # A uniform half, chosen by id: about 500 of 1,000; the rest waits for the next full batch.
    pending = log.pending()[prediction_log.SAMPLE]
    assert 430 <= len(logged_ids) + pending <= 570 and logged_ids <= ids and pending < 300
    remainder = log.flush(final=True)
    assert len(remainder) == 1 and f"/predictions/{log_spec.name}/remainder/" in remainder[0]
    assert log.pending() == {prediction_log.SAMPLE: 0, prediction_log.INSPECT: 0}


def test_low_confidence_and_out_of_range_go_to_inspection_never_to_drift_monitor(bucket, log_spec, flights_small):
    settings = bucket
    ranges = prediction_log.FeatureRanges.from_reference(flights_small, log_spec)
    log = prediction_log.PredictionLog(log_spec, settings, ranges=lambda version: ranges)
    odd = flights_small.head(4).assign(temp=[50.0, 120.0, 50.0, 50.0], dest=["BOS", "BOS", "XYZ", "BOS"])
    log.offer(answered(odd, log_spec, [0.1, 0.1, 0.1, 0.55]))
    log.offer(answered(flights_small.head(50), log_spec, [0.5] * 50, version="2", alias="challenger", shadow=True))
    written = log.flush()
    inspected = [u for u in written if "/inspect/" in u]
    assert len(inspected) == 1 and inspected[0].startswith(f"s3://{settings.s3_bucket}/predictions/{log_spec.name}/inspect/")
    assert not inspected[0].startswith(f"s3://{settings.s3_bucket}/{settings.s3_incoming_prefix}")
    frame, _ = storage.read_table(inspected[0], settings)
    reasons = frame[prediction_log.WHY].tolist()
    assert len(reasons) == 3  # the shadow scores were never an answer: not logged
    assert "temp=120 outside" in reasons[0]
    assert "dest='XYZ' unseen" in reasons[1]
    assert reasons[2] == "confidence 0.550 < 0.6"


def test_no_retrain_window_reads_the_log(bucket, log_spec, flights_small):
    settings = bucket
    landed = f"s3://{settings.s3_bucket}/{settings.s3_incoming_prefix}{log_spec.name}/"
    storage.write_table(flights_small.head(600), f"{landed}2013-01.parquet", settings)
    log = prediction_log.PredictionLog(log_spec.model_copy(update={"serving": log_spec.serving.model_copy(update={"log_sample_share": 1.0})}), settings)
    log.offer(answered(flights_small.head(700), log_spec, [0.2] * 700))
    assert log.flush(final=True)
    storage.write_table(pd.DataFrame({"prediction_id": ["x"], "dep_delay": [3.0]}), f"{landed}_predictions/labels/l.parquet", settings)
    window = batches.read_batch(landed, RetrainWindowSpec(recursive=True), settings=settings)
    assert window.sources == (f"{landed}2013-01.parquet",)


def test_labels_arriving_later_are_joined_by_prediction_id_and_scored(bucket, log_spec, flights_small):
    settings = bucket
    spec = log_spec.model_copy(update={
        "serving": log_spec.serving.model_copy(update={"log_sample_share": 1.0}),
        "model": log_spec.model.model_copy(update={"params": {"n_estimators": 30, "max_depth": 3}}),
    })
    history, served = flights_small.iloc[:3600], flights_small.iloc[3600:4400].dropna(subset=["dep_delay"])
    trained = modeling.fit_models(features.build_feature_set(Batch("mem://train", "fp", history), spec), spec)
    log = prediction_log.PredictionLog(spec, settings)
    records = answered(served, spec, modeling.predict_scores(trained.model, served[features.model_input_columns(spec)], spec))
    log.offer(records)
    log.flush(final=True)

    labels = pd.DataFrame({"prediction_id": [r.prediction_id for r in records], "dep_delay": served["dep_delay"].to_numpy()})
    labels_uri = f"{prediction_log.incoming_log_prefix(spec.name, prediction_log.LABELS, settings)}2013-06.parquet"
    storage.write_table(labels.iloc[::-1], labels_uri, settings)
    frame, fingerprint = storage.read_table(labels_uri, settings)
    joined = prediction_labels.join_labels(Batch(labels_uri, fingerprint, frame), spec, settings)
    assert len(joined.frame) == len(served) and len(joined.sources) > 1
    # Each label sits beside the inputs it was predicted from.
    expected = dict(zip(labels["prediction_id"], served["distance"]))
    assert (joined.frame["distance"].to_numpy() == joined.frame["prediction_id"].map(expected).to_numpy()).all()
    contract.validate_batch(joined.frame, spec, labels_uri, joined.fingerprint, logged=True)

    result = monitoring.assess_batch(joined.frame, history, trained.model, {"roc_auc": 0.99}, None, spec, holdout=history).result
    assert result.performance is not None and result.performance.degraded  # 0.99 is out of reach of this small model
    assert result.performance.n_rows == len(served)

    unknown = pd.DataFrame({"prediction_id": ["nobody"], "dep_delay": [1.0]})
    with pytest.raises(BatchReadError, match="none of its 1 prediction ids is in the prediction log's sample"):
        prediction_labels.join_labels(Batch(labels_uri, "fp", unknown), spec, settings)
    with pytest.raises(BatchReadError, match="needs the columns \\['dep_delay'\\]"):
        prediction_labels.join_labels(Batch(labels_uri, "fp", unknown.drop(columns="dep_delay")), spec, settings)


def test_a_failed_write_keeps_the_rows_for_the_next_flush(s3_endpoint, settings, log_spec, flights_small):
    elsewhere = Settings(s3_bucket=f"plog-{uuid.uuid4().hex[:8]}")
    log = prediction_log.PredictionLog(log_spec, elsewhere)
    log.offer(answered(flights_small.head(20), log_spec, [0.5] * 20))
    before = log.pending()
    with pytest.raises(Exception, match="NoSuchBucket|does not exist"):
        log.flush(final=True)
    assert log.pending()[prediction_log.INSPECT] == before[prediction_log.INSPECT] == 20
    storage.ensure_bucket(elsewhere.s3_bucket, elsewhere)
    assert len(log.flush(final=True)) == 2
    assert log.pending() == {prediction_log.SAMPLE: 0, prediction_log.INSPECT: 0}


def test_prune_deletes_what_is_older_than_the_retention(s3_endpoint, log_spec, flights_small):
    own = Settings(s3_bucket=f"plog-{uuid.uuid4().hex[:8]}", prediction_log_retention_days=30)
    storage.ensure_bucket(own.s3_bucket, own)
    log = prediction_log.PredictionLog(log_spec, own)
    log.offer(answered(flights_small.head(700), log_spec, [0.5] * 700))
    written = log.flush(final=True)
    landed = f"s3://{own.s3_bucket}/{own.s3_incoming_prefix}{log_spec.name}/2013-01.parquet"
    storage.write_table(flights_small.head(10), landed, own)

    assert prediction_log.prune(settings=own).deleted == ()
    later = datetime.now(timezone.utc) + timedelta(days=31)
    planned = prediction_log.prune(now=later, dry_run=True, settings=own)
    assert sorted(planned.deleted) == sorted(written) and planned.dry_run
    done = prediction_log.prune(now=later, settings=own)
    assert sorted(done.deleted) == sorted(written)
    remaining = [o.uri for o in storage.list_objects(f"s3://{own.s3_bucket}/", settings=own)]
    assert remaining == [landed]  # landed batches are not the log's to delete


def test_leanops_predictions_prune(s3_endpoint, log_spec, flights_small):
    import json

    from typer.testing import CliRunner

    from leanops_cli.app import app

    own = Settings(s3_bucket=f"plog-{uuid.uuid4().hex[:8]}")
    storage.ensure_bucket(own.s3_bucket, own)
    log = prediction_log.PredictionLog(log_spec, own)
    log.offer(answered(flights_small.head(30), log_spec, [0.5] * 30))
    written = log.flush(final=True)
    with environment(LEANOPS_S3_BUCKET=own.s3_bucket):
        kept = CliRunner().invoke(app, ["predictions", "prune", "--json"])
        dry = CliRunner().invoke(app, ["predictions", "prune", "--older-than-days", "0", "--dry-run", "--json"])
        done = CliRunner().invoke(app, ["predictions", "prune", "--older-than-days", "0"])
    assert kept.exit_code == 0 and json.loads(kept.stdout)["deleted"] == []
    assert sorted(json.loads(dry.stdout)["deleted"]) == sorted(written)
    assert done.exit_code == 0 and f"deleted {len(written)} object(s)" in done.stdout
    assert storage.list_objects(f"s3://{own.s3_bucket}/", settings=own) == []
