"""Cached results are read back as data, never as code: what a writer of the results storage plants there
is refused, and the typed results of leanops.results come back as they were stored."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import operator
import os
import pathlib
import pickle
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from leanops import features, modeling, safe_codec
from leanops.results import (
    Batch, CandidateMetrics, DatasetScores, DriftResult, FeatureDrift, LatencyResult, PerformanceCheck,
    RollbackCheck, SegmentScore, SmokeTestResult, TuningResult, ValidationReport,
)
from leanops.safe_codec import RecordedError, RefusedResult
from support import prefect_request, wait_for
from tasks._serializer import SAFE_SERIALIZER


class Planted:
    """What an attacker pickles: unpickling it touches ``marker`` (it could as well run a shell)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


@pytest.fixture(scope="module")
def batch(flights_small) -> Batch:
    return Batch(uri="s3://leanops/incoming/flights/2013-h1.parquet", fingerprint="f" * 16, frame=flights_small,
                 sources=("s3://leanops/incoming/flights/2013-01.parquet",))


@pytest.fixture(scope="module")
def feature_set(batch, spec):
    return features.build_feature_set(batch, spec)


@pytest.fixture(scope="module")
def trained(feature_set, spec):
    return modeling.fit_models(feature_set, spec, {"n_estimators": 10})


def round_trip(value):
    return SAFE_SERIALIZER.loads(SAFE_SERIALIZER.dumps(value))


def test_frames_and_fitted_models_come_back_as_they_were(batch, feature_set, trained, spec):
    back = round_trip(batch)
    assert back == batch and back.sources == batch.sources
    pd.testing.assert_frame_equal(back.frame, batch.frame.where(batch.frame.notna(), None), check_dtype=True)

    back = round_trip(feature_set)
    assert back == feature_set and back.rows_excluded == feature_set.rows_excluded
    for part in ("X_train", "X_valid", "X_holdout"):
        pd.testing.assert_frame_equal(getattr(back, part), getattr(feature_set, part))
    for part in ("y_train", "y_valid", "y_holdout"):
        pd.testing.assert_series_equal(getattr(back, part), getattr(feature_set, part))

    back = round_trip(trained)
    assert back == trained and back.params == trained.params and back.feature_importance == trained.feature_importance
    for fitted, loaded in ((trained.model, back.model), (trained.baseline, back.baseline)):
        expected = modeling.predict_scores(fitted, feature_set.X_holdout, spec)
        np.testing.assert_array_equal(modeling.predict_scores(loaded, feature_set.X_holdout, spec), expected)

    evaluation = modeling.evaluate(trained, feature_set, spec)
    assert round_trip(evaluation) == evaluation


def test_plain_results_come_back_equal_with_their_types():
    drift = DriftResult(
        status="drift", n_reference=4000, n_current=3000, n_reference_sampled=4000, n_current_sampled=3000,
        features=(FeatureDrift("dest", "categorical", "jensenshannon", 0.31, 0.1, True),
                  FeatureDrift("temp", "numeric", "wasserstein", math.nan, 0.1, True, note="no current values")),
        drift_share=0.5, dataset_drift_share=0.3, dataset_drift=True, drifted_features=("dest", "temp"),
        performance=PerformanceCheck("roc_auc", 0.61, 0.7, "maximize", 0.05, True, 3000, {"0": 0.9, "1": 0.2}),
        unknown_categories={"dest": ("XYZ",)},
    )
    back = round_trip(drift)
    assert back.features[0] == drift.features[0] and math.isnan(back.features[1].score)
    assert back.performance == drift.performance and back.unknown_categories == {"dest": ("XYZ",)}
    assert back.summary_markdown() == drift.summary_markdown()

    scores = DatasetScores("holdout", 800, {"roc_auc": np.float64(0.71)}, (SegmentScore("carrier=UA", 120, None),), "run:abc")
    candidates = (CandidateMetrics("m", "3", (scores,), {"roc_auc": 0.5}, SmokeTestResult("models:/m/3", True, 5),
                                   LatencyResult(1000, 0.02, 3)), None)
    assert round_trip(candidates) == candidates
    assert type(round_trip(candidates)[0].scores[0].metrics["roc_auc"]) is np.float64

    check = RollbackCheck("roc_auc", "s3://b/k", 900, "4", 0.6, "3", 0.7, True)
    report = ValidationReport("s3://b/k", "f" * 16, 900, ("3 rows with a missing target",))
    assert (round_trip(check), round_trip(report)) == (check, report)

    trials = pd.DataFrame({"number": [0, 1], "value": [0.7, np.nan], "params_max_depth": [3, 7],
                           "datetime_start": pd.to_datetime(["2026-11-30 10:00", "2026-11-30 10:01"]),
                           "duration": pd.to_timedelta([1.5, 2.0], unit="s"), "state": ["COMPLETE", "FAIL"]})
    tuning = TuningResult("s", {"max_depth": 7, "learning_rate": 0.05}, 0.7, None, 2, 1, 1, 0, trials=trials, report_html="<html/>")
    back = round_trip(tuning)
    assert back == tuning and back.report_html == "<html/>"
    pd.testing.assert_frame_equal(back.trials, trials)

    failure = round_trip(KeyError("roc_auc"))
    assert isinstance(failure, RecordedError) and failure.type_name == "builtins.KeyError"


def test_a_planted_pickle_is_refused_and_never_unpickled(tmp_path):
    from prefect._internal.result_records import ResultRecord, ResultRecordMetadata
    from prefect.serializers import PickleSerializer

    marker = tmp_path / "planted-code-ran"
    raw = pickle.dumps(Planted(marker))
    prefect_pickle = PickleSerializer().dumps(Planted(marker))  # base64, as Prefect's default writes it
    record = ResultRecord(result=Planted(marker), metadata=ResultRecordMetadata(serializer=PickleSerializer())).serialize()
    for planted in (raw, prefect_pickle):
        with pytest.raises(RefusedResult, match="it is a pickle"):
            SAFE_SERIALIZER.loads(planted)
    with pytest.raises(RefusedResult, match="not 'leanops-result/1'"):
        SAFE_SERIALIZER.loads(record)
    assert not marker.exists()


def test_a_tampered_frame_is_refused(feature_set):
    document = json.loads(SAFE_SERIALIZER.dumps(feature_set))
    blob = document["blobs"][0]
    data = bytearray(base64.b64decode(blob["data"]))
    data[len(data) // 2] ^= 0x01
    blob["data"] = base64.b64encode(bytes(data)).decode()
    with pytest.raises(RefusedResult, match=r"blob 0 \(parquet\) hashes to .* \(tampered or corrupt\)"):
        SAFE_SERIALIZER.loads(json.dumps(document).encode())


def _document_with_model(model) -> bytes:
    """A result document that stores ``model`` with a correct digest, as a writer of the bucket could."""
    import skops.io as sio

    document = json.loads(SAFE_SERIALIZER.dumps({"model": 0}))
    data = sio.dumps(model)
    document["blobs"] = [{"kind": "skops", "sha256": hashlib.sha256(data).hexdigest(),
                          "data": base64.b64encode(data).decode()}]
    document["value"] = {"$": "dict", "items": [["model", {"$": "model", "blob": 0}]]}
    return json.dumps(document).encode()


def test_a_planted_model_with_a_foreign_type_or_step_is_refused_before_it_runs(tmp_path, feature_set):
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    marker = tmp_path / "planted-step-ran"
    # A type outside our models: refused from the file's schema, nothing constructed.
    foreign = Pipeline([("run", FunctionTransformer(os.system, kw_args={"command": f"touch {marker}"}))])
    with pytest.raises(RefusedResult, match=r"types outside leanops' models: \['posix.system'\]"):
        SAFE_SERIALIZER.loads(_document_with_model(foreign))
    # Only allowed types, but a step no leanops feature builds (it would write a file at predict time).
    writes = Pipeline([("write", FunctionTransformer(operator.methodcaller("to_csv", str(marker))))])
    with pytest.raises(RefusedResult, match="a step calls DataFrame.to_csv"):
        SAFE_SERIALIZER.loads(_document_with_model(writes))
    assert not marker.exists()


def test_every_cached_task_stores_safe_results_read_through_verified_records():
    import importlib

    from prefect import Task
    from prefect.cache_policies import NO_CACHE

    from tasks._serializer import VerifiedRecordStorage

    cached = []
    for module_path in sorted(Path(__file__).resolve().parent.parent.joinpath("tasks").glob("[!_]*.py")):
        module = importlib.import_module(f"tasks.{module_path.stem}")
        for task in (v for v in vars(module).values() if isinstance(v, Task) and v.__module__ == module.__name__):
            if task.persist_result or task.cache_policy not in (NO_CACHE, None):
                cached.append(task.name)
                assert task.result_serializer is SAFE_SERIALIZER, task.name
                assert isinstance(task.cache_policy.key_storage, VerifiedRecordStorage), task.name
    assert {"build_features", "fit_model", "evaluate_model", "validate_batch", "compute_drift"} <= set(cached)


# --- a planted cache record, read back by a real Prefect cache hit --------------------------------


def _plant_prefect_pickle(metadata_path: Path, payload_path: Path, marker: Path) -> None:
    """What Prefect's default (pickle) serializer writes, carrying the attacker's object."""
    from prefect._internal.result_records import ResultRecord, ResultRecordMetadata
    from prefect.serializers import PickleSerializer

    metadata = ResultRecordMetadata(serializer=PickleSerializer(), storage_key=str(payload_path))
    metadata_path.write_bytes(metadata.dump_bytes())
    payload_path.write_bytes(ResultRecord(result=Planted(marker), metadata=metadata).serialize())


def _plant_pickle_payload(metadata_path: Path, payload_path: Path, marker: Path) -> None:
    """Our metadata left as it was; the payload swapped for a pickle."""
    from prefect.serializers import PickleSerializer

    payload_path.write_bytes(PickleSerializer().dumps(Planted(marker)))


def _tamper_frame(metadata_path: Path, payload_path: Path, marker: Path) -> None:
    document = json.loads(payload_path.read_bytes())
    blob = document["blobs"][0]
    data = bytearray(base64.b64decode(blob["data"]))
    data[-40] ^= 0x01
    blob["data"] = base64.b64encode(bytes(data)).decode()
    payload_path.write_text(json.dumps(document))


def _run_log(api_url: str, flow_run_id) -> str:
    response = prefect_request("POST", f"{api_url}/logs/filter", json={"logs": {"flow_run_id": {"any_": [str(flow_run_id)]}}})
    return "\n".join(entry["message"] for entry in response.json())


def test_a_planted_cache_record_is_a_logged_miss_that_the_rerun_replaces(batch, spec, prefect_server, settings, tmp_path):
    from prefect import flow
    from prefect.settings import get_current_settings

    from tasks.featurize import build_features
    from tasks._serializer import RECORDS_FOLDER

    unique = Batch(uri=batch.uri, fingerprint=uuid.uuid4().hex[:16], frame=batch.frame)  # a cache key of its own

    @flow
    def featurize_once():
        return build_features(unique, spec, return_state=True).name

    results = Path(get_current_settings().results.local_storage_path)
    before = set((results / RECORDS_FOLDER).glob("*"))
    assert featurize_once() == "Completed"
    (metadata_path,) = set((results / RECORDS_FOLDER).glob("*")) - before
    payload_path = results / metadata_path.name
    marker = tmp_path / "planted-code-ran"
    for plant in (_plant_prefect_pickle, _plant_pickle_payload, _tamper_frame):
        plant(metadata_path, payload_path, marker)
        rerun = featurize_once(return_state=True)
        assert rerun.result() == "Completed", plant.__name__  # a miss: the record was refused, the task ran again
        assert not marker.exists(), plant.__name__
        refused = f"cache record {metadata_path.name} refused, treated as a miss"
        wait_for(lambda: refused in _run_log(settings.resolved_prefect_api_url, rerun.state_details.flow_run_id),
                 f"the refusal of {plant.__name__} in the run's log")
        safe_codec.verify(payload_path.read_bytes())  # the rerun wrote a good record over the planted one
    assert featurize_once() == "Cached"
