"""The data contract: a batch is checked against its spec right after it is read.

Every problem is collected and reported in one ``ContractViolation``: a user fixing a batch
sees the whole list at once, not one error per attempt.
"""

from __future__ import annotations

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
    shown = [repr(v) for v in values.unique()[:_EXAMPLES]]
    return ", ".join(shown)


def check_batch(frame: pd.DataFrame, spec: Spec) -> tuple[list[str], list[str]]:
    """Return (violations, warnings) of a batch against the spec's contract."""
    violations: list[str] = []
    warnings: list[str] = []
    contract = spec.contract
    n_rows = len(frame)
    if n_rows < contract.min_rows:
        violations.append(f"batch has {n_rows} rows; the contract requires at least {contract.min_rows}")

    missing = [c for c in required_columns(spec) if c not in frame.columns]
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
        problem = _dtype_problem(name, series, rule)
        if problem:
            violations.append(problem)
            continue  # range and category checks are meaningless on the wrong type
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


def validate_batch(frame: pd.DataFrame, spec: Spec, uri: str, fingerprint: str) -> ValidationReport:
    """Raise one ``ContractViolation`` listing every problem, or return the report with warnings."""
    violations, warnings = check_batch(frame, spec)
    if violations:
        raise ContractViolation(uri, violations)
    return ValidationReport(uri=uri, fingerprint=fingerprint, n_rows=len(frame), warnings=tuple(warnings))
