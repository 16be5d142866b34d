"""The data contract: a batch is checked against its spec right after it is read.

Every problem is collected and reported in one ``ContractViolation``: a user fixing a batch
sees the whole list at once, not one error per attempt.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from leanops.errors import ContractViolation
from leanops.results import ValidationReport
from leanops.spec import ColumnRule, Spec

_EXAMPLES = 5


def required_columns(spec: Spec) -> list[str]:
    columns = [*spec.raw_feature_columns, spec.target.source, *spec.contract.columns]
    if spec.time is not None:
        columns.append(spec.time.column)
    return list(dict.fromkeys(columns))


def _dtype_problem(name: str, series: pd.Series, rule: ColumnRule) -> str | None:
    dtype = series.dtype
    non_null = series.dropna()
    if rule.dtype == "integer":
        if ptypes.is_bool_dtype(dtype):
            return f"column {name!r} must be integer, found bool"
        if ptypes.is_integer_dtype(dtype):
            return None
        # CSV and nullable sources turn integer columns with gaps into floats: accept whole numbers.
        if ptypes.is_float_dtype(dtype) and bool((non_null % 1 == 0).all()):
            return None
        return f"column {name!r} must be integer, found {dtype}"
    if rule.dtype in {"float", "number"}:
        if ptypes.is_numeric_dtype(dtype) and not ptypes.is_bool_dtype(dtype):
            return None
        return f"column {name!r} must be numeric, found {dtype}"
    if rule.dtype == "boolean":
        return None if ptypes.is_bool_dtype(dtype) else f"column {name!r} must be boolean, found {dtype}"
    if rule.dtype == "string":
        if ptypes.is_string_dtype(dtype) or isinstance(dtype, pd.CategoricalDtype):
            if ptypes.is_object_dtype(dtype) and not non_null.map(lambda v: isinstance(v, str)).all():
                return f"column {name!r} must hold strings, found mixed values"
            return None
        return f"column {name!r} must be string, found {dtype}"
    if rule.dtype == "datetime":
        if ptypes.is_datetime64_any_dtype(dtype):
            return None
        if ptypes.is_object_dtype(dtype) or ptypes.is_string_dtype(dtype):
            parsed = pd.to_datetime(non_null, errors="coerce", utc=True, format="ISO8601")
            bad = int(parsed.isna().sum())
            return None if bad == 0 else f"column {name!r} must be datetime: {bad} values do not parse"
        return f"column {name!r} must be datetime, found {dtype}"
    return None


def _examples(values: pd.Series) -> str:
    # As the data shows them (31, 'BOS'), not numpy's reprs (np.int64(31)).
    shown = [repr(v.item() if isinstance(v, np.generic) else v) for v in values.unique()[:_EXAMPLES]]
    return ", ".join(shown)


def _counted(labels: pd.Series) -> str:
    """``'No' (812), 'Yes' (188)``: the most frequent values with their row counts."""
    counts = labels.value_counts()
    shown = ", ".join(f"{label!r} ({n:,})" for label, n in counts.head(_EXAMPLES).items())
    return shown + (f" and {len(counts) - _EXAMPLES} more" if len(counts) > _EXAMPLES else "")


def _is_number(series: pd.Series) -> bool:
    return ptypes.is_numeric_dtype(series.dtype) and not ptypes.is_bool_dtype(series.dtype)


def _is_boolean(series: pd.Series) -> bool:
    if ptypes.is_bool_dtype(series.dtype):
        return True
    values = series.dropna()
    return ptypes.is_object_dtype(series.dtype) and len(values) > 0 and bool(values.map(lambda v: isinstance(v, (bool, np.bool_))).all())


def label_problems(frame: pd.DataFrame, spec: Spec) -> list[str]:
    """Labels of the target source that no rule of the spec can read (e.g. a class outside ``classes``)."""
    from leanops.features import target_labels

    rule = spec.target
    if rule.source not in frame.columns:
        return []
    source = frame[rule.source]
    values = source.dropna()
    where = f"target source {rule.source!r}"
    if spec.task == "regression" or rule.positive_when_gt is not None:
        if _is_number(source) or values.empty:
            return []
        need = "a regression target" if spec.task == "regression" else f"target.positive_when_gt = {rule.positive_when_gt:g}"
        return [f"{where} must be numeric for {need}, found {source.dtype} values {_counted(target_labels(values))}"]
    labels = target_labels(values)
    if rule.classes is not None:
        outside = labels[~labels.isin(rule.classes)]
        if len(outside):
            return [f"{where} holds values outside target.classes {rule.classes}: {_counted(outside)}"]
        return []
    if rule.positive is not None or _is_boolean(source) or values.empty:
        return []
    if _is_number(source):
        other = labels[~values.isin([0, 1])]
        if len(other):
            return [
                f"{where} must hold 0/1 or booleans for a binary target without target.positive or "
                f"target.positive_when_gt; found {_counted(other)}: set target.positive_when_gt or name the positive value(s) in target.positive"
            ]
        return []
    rarest = labels.value_counts().index[-1]
    return [
        f"{where} holds labels {_counted(labels)}: name the value(s) that mean positive in target.positive, "
        f"e.g. positive: [{rarest!r}]"
    ]


def class_problems(frame: pd.DataFrame, spec: Spec) -> list[str]:
    """Labels that read but cannot train or score a classifier: one class only, a named positive value absent.
    A batch without any label (all missing) is no problem here: it can still be checked for drift."""
    from leanops.features import target_labels

    rule = spec.target
    if spec.task == "regression" or rule.source not in frame.columns:
        return []
    values = frame[rule.source].dropna()
    if values.empty:
        return []
    labels = target_labels(values)
    problems = []
    if rule.positive is not None:
        absent = [value for value in rule.positive if value not in set(labels.unique())]
        if absent:
            problems.append(f"target.positive value(s) {absent} never occur in {rule.source!r} (values seen: {_counted(labels)})")
    if rule.positive_when_gt is not None:
        positives = values > rule.positive_when_gt
        seen = f"{rule.source} > {rule.positive_when_gt:g} in {int(positives.sum()):,} of them"
    elif rule.positive is not None:
        positives = labels.isin(rule.positive)
        seen = f"values seen: {_counted(labels)}"
    elif rule.classes is not None:
        positives = None
        seen = f"values seen: {_counted(labels)}"
    else:
        positives = values.astype(bool)
        seen = f"values seen: {_counted(labels)}"
    n_classes = labels.nunique() if positives is None else positives.nunique()
    if n_classes < 2:
        problems.append(
            f"target {rule.name!r} has a single class in the {len(values):,} labelled rows ({seen}); "
            "a classifier needs at least two to learn or be scored"
        )
    return problems


def target_problems(frame: pd.DataFrame, spec: Spec) -> list[str]:
    """Every problem of the batch's labels against the spec's target, with the values seen: the data-time
    half of "will this spec train?" (the spec's own fields are checked when it is loaded)."""
    if spec.target.source not in frame.columns:
        return [f"missing column {spec.target.source!r} (the target source)"]
    return label_problems(frame, spec) or class_problems(frame, spec)


def _value_problems(name: str, series: pd.Series, rule: ColumnRule) -> tuple[list[str], list[str]]:
    """(violations, warnings) of one column's values against its rule: dtype, range, categories (nulls apart)."""
    problem = _dtype_problem(name, series, rule)
    if problem:
        return [problem], []  # range and category checks are meaningless on the wrong type
    violations: list[str] = []
    warnings: list[str] = []
    non_null = series.dropna()
    if (rule.min is not None or rule.max is not None) and ptypes.is_numeric_dtype(series.dtype):
        low = non_null < rule.min if rule.min is not None else pd.Series(False, index=non_null.index)
        high = non_null > rule.max if rule.max is not None else pd.Series(False, index=non_null.index)
        outside = non_null[low | high]
        if len(outside):
            violations.append(
                f"column {name!r} has {len(outside)} values outside [{rule.min}, {rule.max}], e.g. {_examples(outside)}"
            )
    if rule.allowed is not None:
        unseen = non_null[~non_null.astype(str).isin(rule.allowed)]
        if len(unseen):
            message = f"column {name!r} has {len(unseen)} values in unseen categories: {_examples(unseen)}"
            (violations if rule.unknown == "reject" else warnings).append(message)
    return violations, warnings


def input_problems(frame: pd.DataFrame, spec: Spec, columns: list[str]) -> tuple[list[str], list[str]]:
    """(violations, warnings) of some rows of a model's inputs ``columns``: what scoring checks, chunk by chunk.
    Labels are not required; row counts, duplicates and null shares are properties of a whole batch, not of
    a chunk (the caller counts nulls across chunks), and a column entirely null in a chunk has no dtype to check."""
    violations = [f"missing column {c!r} (a model input)" for c in columns if c not in frame.columns]
    warnings: list[str] = []
    for name in columns:
        rule = spec.contract.columns.get(name)
        if rule is None or name not in frame.columns or frame[name].isna().all():
            continue
        rejected, reported = _value_problems(name, frame[name], rule)
        violations += rejected
        warnings += reported
    return violations, warnings


def check_batch(frame: pd.DataFrame, spec: Spec, logged: bool = False) -> tuple[list[str], list[str]]:
    """Return (violations, warnings) of a batch against the spec's contract. ``logged``: rows the endpoint
    was asked (the prediction log) must carry the model's inputs, and the target source only once labels
    are joined to them; every rule holds for the columns they carry."""
    violations: list[str] = []
    warnings: list[str] = []
    contract = spec.contract
    n_rows = len(frame)
    if n_rows < contract.min_rows:
        violations.append(f"batch has {n_rows} rows; the contract requires at least {contract.min_rows}")

    required = list(dict.fromkeys(spec.raw_feature_columns)) if logged else required_columns(spec)
    missing = [c for c in required if c not in frame.columns]
    for column in missing:
        role = "the target source" if column == spec.target.source else "a required column"
        violations.append(f"missing column {column!r} ({role})")

    for name, rule in contract.columns.items():
        if name not in frame.columns:
            continue
        series = frame[name]
        null_share = float(series.isna().mean()) if n_rows else 0.0
        if n_rows and null_share == 1.0:
            violations.append(f"column {name!r} is entirely null")
            continue
        if null_share > rule.max_null_share:
            violations.append(f"column {name!r} has {null_share:.1%} nulls; at most {rule.max_null_share:.1%} allowed")
        rejected, reported = _value_problems(name, series, rule)
        violations += rejected
        warnings += reported

    if spec.target.source in frame.columns:
        violations += target_problems(frame, spec)
    if spec.target.source in frame.columns and spec.target.on_missing == "error":
        missing_target = int(frame[spec.target.source].isna().sum())
        if missing_target:
            violations.append(f"target source {spec.target.source!r} is missing in {missing_target} rows")

    if n_rows:
        duplicated = int(frame.duplicated().sum())
        share = duplicated / n_rows
        if share > contract.max_duplicate_share:
            violations.append(
                f"{duplicated} duplicated rows ({share:.2%}); at most {contract.max_duplicate_share:.2%} allowed"
            )
    return violations, warnings


def validate_batch(frame: pd.DataFrame, spec: Spec, uri: str, fingerprint: str, logged: bool = False) -> ValidationReport:
    """Raise one ``ContractViolation`` listing every problem, or return the report with warnings."""
    violations, warnings = check_batch(frame, spec, logged)
    if violations:
        raise ContractViolation(uri, violations)
    return ValidationReport(uri=uri, fingerprint=fingerprint, n_rows=len(frame), warnings=tuple(warnings))


# --- one value at a time: the online endpoint checks each request row against the same rules ---------


def value_problem(name: str, value: object, rule: ColumnRule) -> tuple[str, str] | None:
    """(the rule broken, a message naming the column and the value) for one JSON value, or None.

    The batch checks above judge a column over many rows (null shares, duplicates); a single row can
    only break a rule of its own value: its type, its range, a category the contract rejects, or a
    missing value where the contract allows none."""
    if value is None or (isinstance(value, float) and value != value):
        if rule.max_null_share > 0:
            return None
        return "not_null", f"column {name!r} must not be null (its contract allows no missing values)"
    kind = rule.dtype
    if kind == "integer":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float) and not value.is_integer()):
            return "dtype", f"column {name!r} must be an integer, found {value!r}"
    elif kind in {"float", "number"}:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return "dtype", f"column {name!r} must be a number, found {value!r}"
    elif kind == "boolean":
        if not isinstance(value, bool):
            return "dtype", f"column {name!r} must be a boolean, found {value!r}"
    elif kind == "string":
        if not isinstance(value, str):
            return "dtype", f"column {name!r} must be a string, found {value!r}"
    elif kind == "datetime":
        if not isinstance(value, str) or not _is_iso_datetime(value):
            return "dtype", f"column {name!r} must be an ISO 8601 date-time, found {value!r}"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if (rule.min is not None and value < rule.min) or (rule.max is not None and value > rule.max):
            low, high = ("-inf" if rule.min is None else f"{rule.min:g}"), ("inf" if rule.max is None else f"{rule.max:g}")
            return "range", f"column {name!r} is {value!r}, outside [{low}, {high}]"
    if rule.allowed is not None and rule.unknown == "reject" and str(value) not in rule.allowed:
        known = ", ".join(rule.allowed[:_EXAMPLES * 4])
        return "allowed", f"column {name!r} is {value!r}, not a known category ({known})"
    return None


def _is_iso_datetime(text: str) -> bool:
    from datetime import datetime

    try:
        datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True
