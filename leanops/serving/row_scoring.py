"""Score JSON rows with a logged pipeline's fitted parts, without pandas: the endpoint's fast path.

A logged model (``leanops.modeling.build_model``) is a ``ColumnTransformer`` of small pandas steps (cast,
parse the time, take a calendar part) and an ``OrdinalEncoder``, then XGBoost. Through MLflow's pyfunc a
single row costs ~8 ms, nearly all of it pandas and scikit-learn overhead per call, whatever the rows.
``RowScorer.from_pipeline`` reads the same fitted pipeline (its column groups, the encoder's categories,
the estimator) and computes each feature per value in plain Python, then calls the estimator itself.

It is an optimisation, never a second definition of the model:
- it compiles only pipelines whose every step it recognises, with the exact step names and arguments
  ``leanops.features`` writes; anything else (models registered with ``SpecFeatures``, a future step)
  gets ``None`` and is served through pyfunc as before;
- it handles only the value types the contract lets through (numbers, text, ISO 8601 times in their
  common forms, null); any other value raises ``Unsupported`` and that batch goes through pyfunc;
- the endpoint swaps a version in only after its answers equalled pyfunc's on the version's input
  example and on probes of missing and unseen values (``leanops.serving.reloading``).
"""

from __future__ import annotations

import copy
import functools
import math
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from leanops.features import CALENDAR_PARTS


class Unsupported(ValueError):
    """A value (or a pipeline) outside what the fast path reproduces exactly: use pyfunc instead."""


# The ISO 8601 forms clients send (what ``request_rows`` and the contract's parser produce): anything else,
# valid or not, goes through pandas in pyfunc so the two parsers never have to agree on corner cases.
_ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?)?(Z|[+-]\d{2}:\d{2})?")
_PART_OF = {
    "dayofweek": operator.methodcaller("weekday"),
    "month": operator.attrgetter("month"),
    "hour": operator.attrgetter("hour"),
    "dayofyear": lambda t: t.timetuple().tm_yday,
}
_NUMERIC_STEPS = ["to_number", "as_float"]
_CATEGORICAL_STEPS = ["as_text", "as_object", "missing_as_nan"]
_DERIVE_STEPS = ["parse_utc", "to_zone", "part"]


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _number(value: Any) -> float:
    if _missing(value):
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Unsupported(f"{value!r} is not a number")
    return float(value)


@functools.lru_cache(maxsize=8192)
def _calendar_part(text: str, zone: str, part: str) -> int:
    # Few distinct times per model (hourly stamps): parsing each once keeps a request's cost flat.
    if not _ISO_TIME.fullmatch(text):
        raise Unsupported(f"{text!r} is not a plain ISO 8601 time")
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)  # naive times read as UTC, as features.spec_columns does
    return _PART_OF[part](moment.astimezone(ZoneInfo(zone)))


@dataclass(frozen=True)
class _Encoding:
    """An ``OrdinalEncoder``'s fitted categories as a dict, with its codes for unknown and missing values."""

    codes: dict[str, float]
    unknown: float
    missing: float

    @classmethod
    def per_column(cls, encoder: Any, n_columns: int) -> list[_Encoding]:
        from sklearn.preprocessing import OrdinalEncoder

        if type(encoder) is not OrdinalEncoder or len(encoder.categories_) != n_columns:
            raise Unsupported(f"{type(encoder).__name__} is not an OrdinalEncoder of the group's {n_columns} column(s)")
        if encoder.handle_unknown != "use_encoded_value" or getattr(encoder, "_infrequent_enabled", False):
            raise Unsupported("the encoder fails on, or groups, categories")
        encodings = []
        for categories in encoder.categories_:
            codes = {c: float(i) for i, c in enumerate(categories) if isinstance(c, str)}
            if len(codes) != len(categories) - int(any(_missing(c) for c in categories)):
                raise Unsupported("the encoder holds categories that are not text")
            encodings.append(cls(codes, float(encoder.unknown_value), float(encoder.encoded_missing_value)))
        return encodings

    def code(self, text: str | None) -> float:
        return self.missing if text is None else self.codes.get(text, self.unknown)


def _text(value: Any) -> str | None:
    if _missing(value):
        return None
    if not isinstance(value, str):
        raise Unsupported(f"{value!r} is not text")
    return value


def _steps(pipeline: Any) -> tuple[list[str], dict[str, Any]]:
    from sklearn.pipeline import Pipeline

    if type(pipeline) is not Pipeline:
        raise Unsupported(f"a column group is a {type(pipeline).__name__}, not a Pipeline")
    return [name for name, _ in pipeline.steps], dict(pipeline.steps)


def _call_args(step: Any) -> tuple[Any, ...]:
    """The arguments a ``FunctionTransformer(operator.methodcaller / attrgetter)`` step was built with."""
    from sklearn.preprocessing import FunctionTransformer

    if type(step) is not FunctionTransformer or type(step.func) not in (operator.methodcaller, operator.attrgetter):
        raise Unsupported(f"step {step!r} is not one of leanops.features' steps")
    return step.func.__reduce__()[1]


def _derived_part(steps: dict[str, Any]) -> tuple[str, str]:
    """(time zone, pandas calendar part) of a group made by ``features._derive``, checking each step."""
    parse = _call_args(steps["parse_utc"])
    if parse[0] != "apply" or not isinstance(parse[1], functools.partial):
        raise Unsupported("unexpected time parsing step")
    import pandas as pd

    if parse[1].func is not pd.to_datetime or parse[1].args or parse[1].keywords != {"utc": True, "format": "ISO8601"}:
        raise Unsupported("unexpected time parsing arguments")
    zone = _call_args(steps["to_zone"])
    matched = re.fullmatch(r"datetime64\[ns, (.+)\]", zone[1]) if zone[0] == "astype" and len(zone) == 2 else None
    part = _call_args(steps["part"])
    if matched is None or part[0] != "apply" or type(part[1]) is not operator.attrgetter:
        raise Unsupported("unexpected time zone or calendar part step")
    (attribute,) = part[1].__reduce__()[1]
    pandas_part = attribute.removeprefix("dt.")
    if not attribute.startswith("dt.") or pandas_part not in CALENDAR_PARTS.values():
        raise Unsupported(f"unexpected calendar part {attribute!r}")
    ZoneInfo(matched.group(1))  # an unknown zone fails here, not on a request
    return matched.group(1), pandas_part


def _group_features(pipeline: Any, columns: Sequence[str]) -> list[Callable[[dict[str, Any]], float]]:
    """One function per output column of one ColumnTransformer group: raw row -> feature value."""
    names, steps = _steps(pipeline)
    derive = names[:3] == _DERIVE_STEPS
    cast = names[3:] if derive else names
    if cast == _NUMERIC_STEPS:
        encodings = None
    elif cast == [*_CATEGORICAL_STEPS, "encode"]:
        encodings = _Encoding.per_column(steps["encode"], len(columns))
    else:
        raise Unsupported(f"unrecognised steps {names}")
    if derive:
        if len(columns) != 1:
            raise Unsupported("a derived feature reads one time column")
        zone, part = _derived_part(steps)
        column, encoding = columns[0], encodings[0] if encodings else None

        def derived(row: dict[str, Any]) -> float:
            value = row[column]
            # pandas turns a missing time into a float part ("3.0" as text) for the whole batch: pyfunc decides.
            if not isinstance(value, str):
                raise Unsupported(f"{value!r} is not an ISO 8601 time")
            number = _calendar_part(value, zone, part)
            return float(number) if encoding is None else encoding.code(str(number))

        return [derived]
    if encodings is None:
        return [lambda row, c=c: _number(row[c]) for c in columns]
    return [lambda row, c=c, e=e: e.code(_text(row[c])) for c, e in zip(columns, encodings)]


@dataclass(frozen=True)
class RowScorer:
    """Rows (dicts of raw column values) -> the pipeline's ``method`` output, feature by feature in Python."""

    features: tuple[Callable[[dict[str, Any]], float], ...]
    predict: Callable[[np.ndarray], Any]

    @classmethod
    def from_pipeline(cls, pipeline: Any, method: str) -> RowScorer:
        """Raises ``Unsupported`` (saying why) unless every step is one ``leanops.features`` writes."""
        from sklearn.compose import ColumnTransformer
        from sklearn.pipeline import Pipeline

        if type(pipeline) is not Pipeline or [name for name, _ in pipeline.steps] != ["features", "model"]:
            raise Unsupported("not a features -> model pipeline")
        transform, estimator = pipeline.named_steps["features"], pipeline.named_steps["model"]
        if type(transform) is not ColumnTransformer or transform.remainder != "drop" or transform.sparse_output_:
            raise Unsupported(f"the first step is a {type(transform).__name__}, not leanops.features' ColumnTransformer")
        if type(estimator).__module__.split(".")[0] != "xgboost" or method not in ("predict", "predict_proba"):
            raise Unsupported(f"{type(estimator).__name__}.{method} is not an XGBoost estimator's prediction")
        if getattr(estimator, "feature_names_in_", None) is not None:
            raise Unsupported("the estimator was fitted on named columns")
        features: list[Callable[[dict[str, Any]], float]] = []
        for _, group, columns in transform.transformers_:
            if isinstance(group, str):  # "drop" / "passthrough": not what features.spec_columns writes
                raise Unsupported(f"column group {group!r}")
            features.extend(_group_features(group, list(columns)))
        if len(features) != getattr(estimator, "n_features_in_", len(features)):
            raise Unsupported("the estimator takes a different number of features")
        # A private single-threaded copy: on one row, waking XGBoost's OpenMP threads cost 1.4-11 ms against
        # 0.5 ms on one thread (bench/bench_row_scoring.py, loaded machine), and a server scales by processes.
        # pyfunc's own estimator is left as it was loaded.
        private = copy.deepcopy(estimator).set_params(n_jobs=1)
        return cls(tuple(features), getattr(private, method))

    def matrix(self, rows: Sequence[dict[str, Any]]) -> np.ndarray:
        return np.array([[feature(row) for feature in self.features] for row in rows], dtype=np.float64)

    def __call__(self, rows: Sequence[dict[str, Any]]) -> np.ndarray:
        return np.asarray(self.predict(self.matrix(rows)))


def row_scorer(pyfunc: Any) -> RowScorer:
    """The fast path of a loaded pyfunc model (scikit-learn flavour), or ``Unsupported`` saying why not."""
    try:
        pipeline = pyfunc.get_raw_model()
    except NotImplementedError as exc:
        raise Unsupported("not a scikit-learn model") from exc
    method = pyfunc.metadata.flavors.get("python_function", {}).get("predict_fn", "predict")
    return RowScorer.from_pipeline(pipeline, method)


UNSEEN = "__leanops_unseen_category__"


def probe_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` and, per row and column, the row with that value missing and (text) unseen: the cases where
    a re-implementation would most likely part from the pipeline."""
    probes = [dict(row) for row in rows]
    for row in rows:
        for column, value in row.items():
            probes.append({**row, column: None})
            if isinstance(value, str):
                probes.append({**row, column: UNSEEN})
    return probes


def checked_row_scorer(pyfunc: Any, reference: Callable[[list[dict[str, Any]]], np.ndarray],
                       rows: Sequence[dict[str, Any]]) -> tuple[RowScorer | None, str]:
    """The fast path if it answers exactly as ``reference`` (pyfunc) on ``probe_rows(rows)``, one by one
    and as one batch; else None. The second item says which, for the log."""
    if not rows:
        return None, "no input example to check the fast path on"
    try:
        scorer = row_scorer(pyfunc)
    except Unsupported as exc:
        return None, f"pipeline not compiled ({exc})"
    probes, checked = probe_rows(rows), 0
    for batch in [[probe] for probe in probes] + [list(rows)]:
        try:
            expected = reference(batch)
        except Exception:  # noqa: BLE001 - a probe pyfunc refuses proves nothing either way; pyfunc answers it alike
            continue
        try:
            got = scorer(batch)
        except Unsupported:
            continue  # such requests go through pyfunc
        if got.shape != expected.shape or not np.array_equal(got, expected, equal_nan=True):
            return None, f"fast path differs from pyfunc on {batch[:1]}: {got.tolist()[:1]} vs {expected.tolist()[:1]}"
        checked += 1
    if not checked:
        return None, "no probe could be compared"
    return scorer, f"fast path equals pyfunc on {checked} probe batches"
