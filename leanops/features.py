"""Pure feature transforms: raw batch columns -> model features and target, and the time-aware split.

Every logged model starts with ``spec_columns(spec, ...)``: a scikit-learn ``ColumnTransformer`` that
takes raw columns (the same columns a batch carries), types them and derives calendar features. It is
built only from scikit-learn's ``FunctionTransformer`` around pandas functions and ``operator``
callables, so a logged model loads and predicts where scikit-learn, pandas and XGBoost are installed,
without leanops. ``SpecFeatures`` (the earlier, leanops-made first step) stays importable so versions
registered with it still load where leanops is installed.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from leanops.errors import ContractViolation
from leanops.results import Batch, FeatureSet, combine_fingerprints
from leanops.spec import FeatureSpec, Spec, label_text

FEATURES_VERSION = "1"  # bump when a transform here changes meaning: invalidates cached feature sets

# What a logged model's feature steps call, beyond scikit-learn's own types: skops refuses any type not
# named on load. Each is a pandas function or a standard-library callable; none is ours.
FEATURE_TRUSTED_TYPES = [
    "functools.partial",
    "operator.attrgetter",
    "operator.methodcaller",
    "pandas.core.tools.datetimes.to_datetime",
    "pandas.core.tools.numeric.to_numeric",
]

# pandas' name of each calendar part a spec can derive (``FeatureSpec.derive``).
CALENDAR_PARTS = {"weekday": "dayofweek", "month": "month", "hour_of_day": "hour", "day_of_year": "dayofyear"}


def _step(function) -> FunctionTransformer:
    # DataFrame in, DataFrame out, columns kept: "one-to-one" names the output after the input.
    return FunctionTransformer(function, feature_names_out="one-to-one")


def _cast(kind: str) -> list[tuple[str, FunctionTransformer]]:
    """Numbers as float64 (anything unreadable missing); categories as text, missing stays missing
    (an integer id is a label, not a quantity: 3 is the category "3")."""
    if kind == "numeric":
        return [
            ("to_number", _step(operator.methodcaller("apply", functools.partial(pd.to_numeric, errors="coerce")))),
            ("as_float", _step(operator.methodcaller("astype", "float64"))),
        ]
    return [
        ("as_text", _step(operator.methodcaller("astype", "string"))),
        # scikit-learn's encoders read NaN as missing, not pandas' NA.
        ("as_object", _step(operator.methodcaller("astype", "object"))),
        ("missing_as_nan", _step(operator.methodcaller("fillna", np.nan))),
    ]


def _derive(part: str, timezone: str) -> list[tuple[str, FunctionTransformer]]:
    """A calendar part of the time column (ISO strings or datetimes; naive ones read as UTC) in the spec's zone."""
    return [
        ("parse_utc", _step(operator.methodcaller("apply", functools.partial(pd.to_datetime, utc=True, format="ISO8601")))),
        ("to_zone", _step(operator.methodcaller("astype", f"datetime64[ns, {timezone}]"))),
        ("part", _step(operator.methodcaller("apply", operator.attrgetter(f"dt.{CALENDAR_PARTS[part]}")))),
    ]


def feature_order(spec: Spec) -> list[FeatureSpec]:
    """The spec's features as models see them: numeric ones first, then categorical, each in spec order."""
    return [f for f in spec.features if f.kind == "numeric"] + [f for f in spec.features if f.kind == "categorical"]


def feature_groups(spec: Spec) -> list[tuple[str, list[FeatureSpec], list[str]]]:
    """(name, features, raw input columns) in ``feature_order``: each derived feature alone (from the time
    column), runs of raw features of one kind together (one transformer per run keeps a one-row predict fast)."""
    groups: list[tuple[str, list[FeatureSpec], list[str]]] = []
    for feature in feature_order(spec):
        if feature.derive:
            groups.append((feature.name, [feature], [spec.time.column]))
        elif groups and not groups[-1][1][0].derive and groups[-1][1][0].kind == feature.kind:
            groups[-1][1].append(feature)
            groups[-1][2].append(feature.name)
        else:
            groups.append((f"{feature.kind}_{len(groups)}", [feature], [feature.name]))
    return groups


def _feature_steps(spec: Spec, feature: FeatureSpec) -> list[tuple[str, FunctionTransformer]]:
    derive = _derive(feature.derive, spec.time.timezone) if feature.derive else []
    return [*derive, *_cast(feature.kind)]


def spec_columns(spec: Spec, numeric: Sequence[tuple[str, object]] = (), categorical: Sequence[tuple[str, object]] = ()) -> ColumnTransformer:
    """Raw columns -> the spec's features, each kind followed by its own encoding steps (``numeric`` /
    ``categorical``: scikit-learn (name, transformer) steps). Columns come out in ``feature_order``."""
    transformers = []
    for name, features, columns in feature_groups(spec):
        encode = numeric if features[0].kind == "numeric" else categorical
        transformers.append((name, Pipeline([*_feature_steps(spec, features[0]), *encode]), columns))
    return ColumnTransformer(transformers, verbose_feature_names_out=False)


def feature_frame(frame: pd.DataFrame, spec: Spec) -> pd.DataFrame:
    """The spec's features of raw rows, named and in ``feature_order``: numbers as float64, categories as
    text or None. The values a model's first step computes, as a table (drift compares these)."""
    parts = []
    for _, features, columns in feature_groups(spec):
        values = Pipeline(_feature_steps(spec, features[0])).fit_transform(frame[columns])
        values.columns = [f.name for f in features]
        parts.append(values)
    out = pd.concat(parts, axis=1) if parts else pd.DataFrame(index=frame.index)
    categorical = spec.categorical_features
    out[categorical] = out[categorical].where(out[categorical].notna(), None)
    return out


class SpecFeatures(TransformerMixin, BaseEstimator):
    """The first step of models registered before ``spec_columns``: kept so they load (leanops installed)."""

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
                values = getattr(times.dt, CALENDAR_PARTS[part])
            else:
                values = X[name]
            if name in self.numeric:
                out[name] = pd.to_numeric(values, errors="coerce").astype("float64")
            else:
                out[name] = values.astype("object").where(values.notna(), None).map(
                    lambda v: None if v is None else str(v)
                )
        return out

    def get_feature_names_out(self, input_features=None):
        return np.asarray([*self.numeric, *self.categorical], dtype=object)


def model_input_columns(spec: Spec) -> list[str]:
    """The raw columns a logged model takes."""
    return list(dict.fromkeys(spec.raw_feature_columns))


def target_labels(series: pd.Series) -> pd.Series:
    """The source's values as label texts (``spec.label_text``), missing stays missing; computed per distinct value."""
    mapping = {value: label_text(value) for value in pd.unique(series.dropna())}
    return series.astype(object).map(mapping).where(series.notna(), None)


def make_target(frame: pd.DataFrame, spec: Spec) -> tuple[pd.Series, pd.Series, dict[str, int]]:
    """Return (target, rows kept mask, excluded counts). Missing target sources follow ``on_missing``.

    The target is 0/1 for a binary task, the class's position in ``target.classes`` for a multiclass
    one, and the number itself for a regression. Batches are checked first (``contract.target_problems``);
    a label no rule can read is refused here too, never turned into a class silently.
    """
    from leanops.contract import label_problems

    source = frame[spec.target.source]
    missing = source.isna()
    counts: dict[str, int] = {}
    rule = spec.target
    problems = label_problems(frame, spec)
    if problems:
        raise ValueError(f"cannot read target {rule.name!r}: " + "; ".join(problems))
    if spec.task == "regression":
        target = source.astype("float64")
    else:
        if rule.positive_when_gt is not None:
            target = (source > rule.positive_when_gt).astype("int64")
        elif rule.positive is not None:
            target = target_labels(source).isin(rule.positive).astype("int64")
        elif rule.classes is not None:
            codes = {label: code for code, label in enumerate(rule.classes)}
            target = target_labels(source).map(codes).fillna(-1).astype("int64")
        else:  # booleans or 0/1 (checked)
            target = source.where(~missing, 0).astype("float64").astype("int64")
    keep = pd.Series(True, index=frame.index)
    policy = rule.on_missing
    if missing.any():
        if policy in ("exclude", "error"):
            keep = ~missing
            counts["missing_target"] = int(missing.sum())
        elif policy == "positive":
            target = target.where(~missing, 1)
        elif policy == "negative":
            target = target.where(~missing, 0)
    return target.rename(rule.name), keep, counts


def class_names(spec: Spec) -> list[str]:
    """A classifier's classes by target code: ``target.classes``, or negative/positive for a binary target."""
    return list(spec.target.classes) if spec.task == "multiclass" else ["negative", "positive"]


def split_class_problems(y_fit: pd.Series, y_holdout: pd.Series, spec: Spec) -> list[str]:
    """A classifier learns only the classes its training rows hold, and its metrics need two in the holdout."""
    return class_count_problems(y_fit.value_counts(), len(y_fit), y_holdout, spec)


def class_count_problems(counts: pd.Series, n_fit: int, y_holdout: pd.Series, spec: Spec) -> list[str]:
    """:func:`split_class_problems` from the training rows' class counts (``value_counts``) alone."""
    if not spec.is_classifier:
        return []
    names, problems = class_names(spec), []
    absent = [name for code, name in enumerate(names) if counts.get(code, 0) == 0]
    if absent:
        seen = ", ".join(f"{names[code]!r} ({n:,})" for code, n in counts.items())
        problems.append(
            f"target {spec.target.name!r}: class(es) {absent} never occur in the {n_fit:,} training rows (seen: {seen}); "
            "every class needs training examples: add data, or remove the class from target.classes"
        )
    if y_holdout.nunique() < 2:
        only = names[int(y_holdout.iloc[0])] if len(y_holdout) else "none"
        problems.append(
            f"target {spec.target.name!r}: the {len(y_holdout):,} holdout rows (the most recent) hold one class only "
            f"({only!r}); the metrics need at least two: add data or raise split.holdout_fraction"
        )
    return problems


def time_order(frame: pd.DataFrame, spec: Spec) -> pd.Index:
    if spec.time is None:
        return frame.sample(frac=1.0, random_state=spec.split.seed).index
    times = pd.to_datetime(frame[spec.time.column], utc=True, format="ISO8601")
    return times.sort_values(kind="stable").index


def raw_columns(frame: pd.DataFrame, spec: Spec) -> list[str]:
    """Every column of a batch but the label's: what a model trained on any version of the spec may take
    (each logged model selects its own inputs), so models of two spec versions are compared on the same rows."""
    return [c for c in frame.columns if c not in (spec.target.source, spec.target.name)]


def build_feature_set(batch: Batch, spec: Spec) -> FeatureSet:
    """Target, raw model inputs, and a time-aware split: train on the past, hold out the most recent slice."""
    frame = batch.frame
    target, keep, excluded = make_target(frame, spec)
    columns = model_input_columns(spec)
    kept = frame.loc[keep]
    # Ordered by the batch's time column, which the model's inputs lack unless a feature derives from it.
    order = time_order(kept, spec)
    X = kept.loc[order, columns].reset_index(drop=True)
    y = target.loc[order].reset_index(drop=True)

    n = len(X)
    if n < 3:
        raise ContractViolation(batch.uri, [f"{n} labelled rows of target {spec.target.name!r}: too few to train and hold out"])
    n_holdout = max(1, int(round(n * spec.split.holdout_fraction)))
    n_fit = n - n_holdout
    n_valid = max(1, int(round(n_fit * spec.split.validation_fraction)))
    n_train = n_fit - n_valid
    description = (
        f"time-ordered by {spec.time.column}: train {n_train}, validation {n_valid}, holdout (most recent) {n_holdout}"
        if spec.time
        else f"shuffled (seed {spec.split.seed}): train {n_train}, validation {n_valid}, holdout {n_holdout}"
    )
    problems = split_class_problems(y.iloc[:n_fit], y.iloc[n_fit:], spec)
    if problems:
        raise ContractViolation(batch.uri, problems)
    if spec.time is not None and n:
        times = pd.to_datetime(kept.loc[order, spec.time.column], utc=True, format="ISO8601")
        description += f"; holdout from {times.iloc[n_fit].isoformat()}"
    return FeatureSet(
        fingerprint=combine_fingerprints(batch.fingerprint, spec.spec_hash, FEATURES_VERSION),
        X_train=X.iloc[:n_train],
        y_train=y.iloc[:n_train],
        X_valid=X.iloc[n_train:n_fit],
        y_valid=y.iloc[n_train:n_fit],
        # Every raw column, not only this spec's inputs: a champion trained before the spec changed (a
        # feature dropped, say) is scored on these rows with the columns it takes.
        X_holdout=kept.loc[order[n_fit:], raw_columns(frame, spec)].reset_index(drop=True),
        y_holdout=y.iloc[n_fit:],
        rows_excluded=excluded,
        split_description=description,
    )
