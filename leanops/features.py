"""Pure feature transforms: raw batch columns -> model features and target, and the time-aware split.

``SpecFeatures`` is the first step of every logged model, so a served model takes raw columns
(the same columns a batch carries) and derives calendar features itself.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from leanops.results import Batch, FeatureSet, combine_fingerprints
from leanops.spec import Spec

FEATURES_VERSION = "1"  # bump when a transform here changes meaning: invalidates cached feature sets


class SpecFeatures(TransformerMixin, BaseEstimator):
    """Derive and type the spec's features from raw columns. Stateless; plain-typed params (skops-safe)."""

    def __init__(self, numeric=(), categorical=(), derived=(), time_column=None, timezone="UTC"):
        self.numeric = numeric
        self.categorical = categorical
        self.derived = derived  # tuples (feature name, part)
        self.time_column = time_column
        self.timezone = timezone

    def fit(self, X, y=None):
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        out = pd.DataFrame(index=X.index)
        derived = dict(self.derived)
        if derived:
            times = pd.to_datetime(X[self.time_column], utc=True, format="ISO8601").dt.tz_convert(self.timezone)
        for name in [*self.numeric, *self.categorical]:
            part = derived.get(name)
            if part is not None:
                values = {
                    "weekday": times.dt.dayofweek,
                    "month": times.dt.month,
                    "hour_of_day": times.dt.hour,
                    "day_of_year": times.dt.dayofyear,
                }[part]
            else:
                values = X[name]
            if name in self.numeric:
                out[name] = pd.to_numeric(values, errors="coerce").astype("float64")
            else:
                # Categories are strings everywhere (an integer id is a label, not a quantity).
                out[name] = values.astype("object").where(values.notna(), None).map(
                    lambda v: None if v is None else str(v)
                )
        return out

    def get_feature_names_out(self, input_features=None):
        return np.asarray([*self.numeric, *self.categorical], dtype=object)


def spec_features(spec: Spec) -> SpecFeatures:
    derived = tuple((f.name, f.derive) for f in spec.features if f.derive)
    return SpecFeatures(
        numeric=tuple(spec.numeric_features),
        categorical=tuple(spec.categorical_features),
        derived=derived,
        time_column=spec.time.column if spec.time else None,
        timezone=spec.time.timezone if spec.time else "UTC",
    )


def model_input_columns(spec: Spec) -> list[str]:
    """The raw columns a logged model takes."""
    return list(dict.fromkeys(spec.raw_feature_columns))


def make_target(frame: pd.DataFrame, spec: Spec) -> tuple[pd.Series, pd.Series, dict[str, int]]:
    """Return (target, rows kept mask, excluded counts). Missing target sources follow ``on_missing``."""
    source = frame[spec.target.source]
    missing = source.isna()
    counts: dict[str, int] = {}
    if spec.target.positive_when_gt is not None:
        target = (source > spec.target.positive_when_gt).astype("int64")
    else:
        target = source.astype("float64")
    keep = pd.Series(True, index=frame.index)
    policy = spec.target.on_missing
    if missing.any():
        if policy in ("exclude", "error"):
            keep = ~missing
            counts["missing_target"] = int(missing.sum())
        elif policy == "positive":
            target = target.where(~missing, 1)
        elif policy == "negative":
            target = target.where(~missing, 0)
    return target.rename(spec.target.name), keep, counts


def time_order(frame: pd.DataFrame, spec: Spec) -> pd.Index:
    if spec.time is None:
        return frame.sample(frac=1.0, random_state=spec.split.seed).index
    times = pd.to_datetime(frame[spec.time.column], utc=True, format="ISO8601")
    return times.sort_values(kind="stable").index


def build_feature_set(batch: Batch, spec: Spec) -> FeatureSet:
    """Target, raw model inputs, and a time-aware split: train on the past, hold out the most recent slice."""
    frame = batch.frame
    target, keep, excluded = make_target(frame, spec)
    columns = model_input_columns(spec)
    kept = frame.loc[keep, columns]
    order = time_order(kept, spec)
    X = kept.loc[order].reset_index(drop=True)
    y = target.loc[order].reset_index(drop=True)

    n = len(X)
    n_holdout = max(1, int(round(n * spec.split.holdout_fraction)))
    n_fit = n - n_holdout
    n_valid = max(1, int(round(n_fit * spec.split.validation_fraction)))
    n_train = n_fit - n_valid
    description = (
        f"time-ordered by {spec.time.column}: train {n_train}, validation {n_valid}, holdout (most recent) {n_holdout}"
        if spec.time
        else f"shuffled (seed {spec.split.seed}): train {n_train}, validation {n_valid}, holdout {n_holdout}"
    )
    if spec.time is not None and n:
        times = pd.to_datetime(X[spec.time.column], utc=True, format="ISO8601")
        description += f"; holdout from {times.iloc[n_fit].isoformat()}"
    return FeatureSet(
        fingerprint=combine_fingerprints(batch.fingerprint, spec.spec_hash, FEATURES_VERSION),
        X_train=X.iloc[:n_train],
        y_train=y.iloc[:n_train],
        X_valid=X.iloc[n_train:n_fit],
        y_valid=y.iloc[n_train:n_fit],
        X_holdout=X.iloc[n_fit:],
        y_holdout=y.iloc[n_fit:],
        rows_excluded=excluded,
        split_description=description,
    )
