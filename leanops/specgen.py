"""A first spec from a sample of the data: what ``leanops spec init`` writes.

Everything a spec needs is inferred from the columns (feature kinds, the task, the label, the data
contract) and every inferred line carries a comment saying what was seen, so a person reviews a
complete, working spec instead of writing one from nothing. The result always loads with
``leanops.spec.parse_spec`` and passes the contract on the data it was inferred from.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import yaml
from pandas.api import types as ptypes

from leanops.errors import SpecError
from leanops.spec import Spec, parse_spec

# A string column with at most this many distinct values gets a list of known categories.
MAX_LISTED_CATEGORIES = 50
# A string target with at most this many distinct values is a multiclass label.
MAX_CLASSES = 20
# Ranges are widened by this share of the seen range's width: the next batch's rare values still pass.
RANGE_MARGIN = 1.0
SAMPLE_ROWS = 200_000
# A feature this rank-correlated with the label is often known only after the label (a leak).
LEAK_CORRELATION = 0.5
ROW_ID_NAMES = {"rownames", "unnamed: 0", "index", "id", "row_id", "rowid"}
TASKS = ("binary", "multiclass", "regression")
PRIMARY_METRIC = {"binary": "roc_auc", "multiclass": "roc_auc_ovr", "regression": "rmse"}
GUARDRAILS = {"binary": ["log_loss"], "multiclass": ["log_loss"], "regression": ["mae"]}


@dataclass
class Draft:
    """Spec data (what ``parse_spec`` takes) and, by dotted path, the comment on each inferred line."""

    data: dict[str, Any]
    comments: dict[str, str] = field(default_factory=dict)
    left_out: dict[str, str] = field(default_factory=dict)
    """Columns that are not features, with the reason (written as comments under ``features``)."""
    header: list[str] = field(default_factory=list)


# --- reading the columns -------------------------------------------------------------------------


def column_dtype(series: pd.Series) -> str:
    """The contract dtype a column holds (``integer``, ``number``, ``boolean``, ``string``, ``datetime``)."""
    dtype = series.dtype
    if ptypes.is_bool_dtype(dtype):
        return "boolean"
    if ptypes.is_integer_dtype(dtype):
        return "integer"
    if ptypes.is_float_dtype(dtype):
        non_null = series.dropna()
        return "integer" if len(non_null) and bool((non_null % 1 == 0).all()) else "number"
    if ptypes.is_datetime64_any_dtype(dtype):
        return "datetime"
    non_null = series.dropna()
    if len(non_null) and (ptypes.is_object_dtype(dtype) or ptypes.is_string_dtype(dtype)):
        if non_null.map(lambda v: isinstance(v, bool)).all():
            return "boolean"
        if non_null.map(lambda v: isinstance(v, str)).all() and _looks_like_datetimes(non_null):
            return "datetime"
    return "string"


def _looks_like_datetimes(values: pd.Series) -> bool:
    head = values.head(200)
    if not head.str.match(r"^\d{4}-\d{2}-\d{2}").all():
        return False
    return not pd.to_datetime(values, errors="coerce", utc=True, format="ISO8601").isna().any()


def _is_row_id(name: str, series: pd.Series, dtype: str) -> bool:
    if name.strip().lower() in ROW_ID_NAMES:
        return True
    if dtype != "integer" or series.isna().any() or len(series) < 20:
        return False
    return bool(series.is_unique and series.is_monotonic_increasing)


def _leave_out_reason(name: str, series: pd.Series, dtype: str) -> str | None:
    non_null = series.dropna()
    n_distinct = non_null.nunique()
    if len(non_null) == 0:
        return "left out: entirely null"
    if _is_row_id(name, series, dtype):
        return "left out: a row id (unique and increasing, or named like one)"
    if n_distinct == 1:
        return f"left out: one value only ({_plain(non_null.iloc[0])})"
    if dtype == "datetime":
        return "left out: a timestamp (pass --time to split on it, then derive calendar features)"
    if dtype == "string" and n_distinct > MAX_LISTED_CATEGORIES and n_distinct > 0.2 * len(non_null):
        return f"left out: {n_distinct:,} distinct values in {len(non_null):,} rows (an identifier or free text)"
    return None


# --- the target and the task ---------------------------------------------------------------------


def _label_name(source: str, suffix: str) -> str:
    return re.sub(r"[^0-9a-zA-Z_]+", "_", f"{source}_{suffix}").strip("_").lower()


def _values(series: pd.Series) -> list[Any]:
    values = series.dropna().unique().tolist()
    return sorted(values, key=lambda v: (str(type(v)), v))


def infer_target(
    series: pd.Series, source: str, task: str | None = None, positive: list[str] | None = None,
    positive_when_gt: float | None = None,
) -> tuple[str, dict[str, Any], dict[str, str]]:
    """(task, the spec's ``target`` mapping, comments by key) from the label column."""
    if task is not None and task not in TASKS:
        raise SpecError(f"task {task!r} is not one of {list(TASKS)}")
    dtype = column_dtype(series)
    non_null = series.dropna()
    if non_null.empty:
        raise SpecError(f"target column {source!r} is entirely null: nothing to learn from")
    counts = non_null.astype(str).value_counts()
    values = _values(non_null)
    seen = ", ".join(f"{v!r} ({counts.get(str(v), 0):,})" for v in values[:MAX_CLASSES])
    target: dict[str, Any] = {"name": "", "source": source}
    comments: dict[str, str] = {}
    numeric = dtype in ("integer", "number")
    zero_one = numeric and set(non_null.unique().tolist()) <= {0, 1}

    if positive_when_gt is not None:
        if not numeric:
            raise SpecError(f"--positive-when-gt needs a numeric target; {source!r} holds {dtype} values")
        task = task or "binary"
        target.update(name=_label_name(source, f"gt_{positive_when_gt:g}"), positive_when_gt=positive_when_gt)
        comments["task"] = f"given: positive when {source} > {positive_when_gt:g}"
    elif positive:
        missing = [p for p in positive if p not in counts.index]
        if missing:
            raise SpecError(f"--positive {missing} never occurs in {source!r}; values seen: {seen}")
        task = task or "binary"
        target.update(name=_label_name(source, "_or_".join(positive)), positive=list(positive))
        comments["task"] = f"given: positive is {' or '.join(map(repr, positive))}; values seen: {seen}"
    elif task in (None, "binary") and (dtype == "boolean" or zero_one):
        task = "binary"
        target["name"] = _label_name(source, "label")
        comments["task"] = f"inferred: {dtype} label, values seen: {seen}"
    elif task in (None, "binary") and not numeric and len(values) == 2:
        task = "binary"
        rarer = counts.index[-1]
        target.update(name=_label_name(source, rarer), positive=[rarer])
        comments["task"] = f"inferred: 2 distinct labels: {seen}"
        comments["target.positive"] = f"inferred: the rarer label; check it, or pass --positive"
    elif task in (None, "multiclass") and not numeric or task == "multiclass":
        if not 3 <= len(values) <= MAX_CLASSES:
            raise SpecError(
                f"target {source!r} has {len(values)} distinct values ({seen}{' ...' if len(values) > MAX_CLASSES else ''}): "
                f"a multiclass label needs 3 to {MAX_CLASSES}; pass --task regression or --positive VALUE"
            )
        task = "multiclass"
        target.update(name=_label_name(source, "class"), classes=[_plain(v) for v in values])
        comments["task"] = f"inferred: {len(values)} distinct labels"
        comments["target.classes"] = f"seen: {seen}"
    elif task in (None, "regression") and numeric:
        task = "regression"
        target["name"] = _label_name(source, "value")
        comments["task"] = f"inferred: numeric label with {len(values):,} distinct values"
    else:
        raise SpecError(
            f"cannot make a {task} target from {source!r} ({dtype}, {len(values)} distinct values: {seen}); "
            "binary needs a boolean or 0/1 column, --positive VALUE or --positive-when-gt NUMBER"
        )
    missing = int(series.isna().sum())
    target["on_missing"] = "exclude"
    comments["target.on_missing"] = (
        f"{missing:,} rows without a label in the sample: excluded from training and counted" if missing
        else "no rows without a label in the sample; any later ones are excluded and counted"
    )
    return task, target, comments


def _label_values(series: pd.Series, task: str, target: dict[str, Any]) -> pd.Series | None:
    """The label as numbers (None for multiclass): what a leak check correlates features with."""
    if task == "multiclass":
        return None
    if "positive_when_gt" in target:
        return (series > target["positive_when_gt"]).astype("float64").where(series.notna())
    if "positive" in target:
        return series.astype(str).isin(target["positive"]).astype("float64").where(series.notna())
    return pd.to_numeric(series, errors="coerce").astype("float64")


def leak_warning(feature: pd.Series, label: pd.Series | None) -> str:
    if label is None or not ptypes.is_numeric_dtype(feature.dtype) or ptypes.is_bool_dtype(feature.dtype):
        return ""
    correlation = feature.astype("float64").corr(label, method="spearman")
    if correlation != correlation or abs(correlation) < LEAK_CORRELATION:
        return ""
    return f"; CHECK: rank correlation {correlation:.2f} with the label: is it known before the label is?"


# --- the contract --------------------------------------------------------------------------------


def _widen(low: float, high: float, dtype: str) -> tuple[float, float]:
    """Bounds that catch a broken batch (wrong sign, wrong unit), not a rare value: one seen range's width
    beyond the seen extremes, and 0 below a column never negative in the sample (counts and amounts)."""
    span = high - low if high > low else max(abs(high), 1.0)
    wide_low = 0.0 if low >= 0 else low - RANGE_MARGIN * span
    wide_high = high + RANGE_MARGIN * span
    if dtype == "integer":
        return float(math.floor(wide_low)), float(math.ceil(wide_high))
    return _round(wide_low, math.floor), _round(wide_high, math.ceil)


def _round(value: float, direction) -> float:
    """Four significant digits, rounded outward (``direction`` is floor or ceil)."""
    if value == 0:
        return 0.0
    digits = 3 - math.floor(math.log10(abs(value)))
    return round(direction(value * 10**digits) / 10**digits, max(digits, 0))


def _null_allowance(share: float) -> float:
    # Seen nulls may come back a little more often; none seen stays none (a new gap is news).
    return 0.0 if share == 0 else min(1.0, math.ceil((share * 1.5 + 0.01) * 100) / 100)


def column_rule(series: pd.Series, dtype: str, role: str) -> tuple[dict[str, Any], str]:
    """A contract rule for one column and the comment saying what was seen."""
    rule: dict[str, Any] = {"dtype": dtype}
    non_null = series.dropna()
    seen: list[str] = [dtype]
    if dtype in ("integer", "number") and len(non_null):
        low, high = float(non_null.min()), float(non_null.max())
        rule["min"], rule["max"] = _widen(low, high, dtype)
        seen.append(f"seen {low:g}..{high:g}, widened by the range's width{' (never negative)' if low >= 0 else ''}")
    if dtype == "string":
        n_distinct = non_null.nunique()
        if n_distinct <= MAX_LISTED_CATEGORIES:
            rule["allowed"] = sorted(non_null.astype(str).unique().tolist())
            # A new category in a feature is news, not a broken batch; a new label value breaks training.
            rule["unknown"] = "reject" if role == "target" else "report"
            seen.append(f"{n_distinct} distinct values seen; new ones are {'refused' if role == 'target' else 'reported'}")
        else:
            seen.append(f"{n_distinct:,} distinct values: no fixed list")
    share = float(series.isna().mean()) if len(series) else 0.0
    if share:
        rule["max_null_share"] = _null_allowance(share)
        seen.append(f"{share:.1%} nulls seen")
    elif role != "target":
        seen.append("no nulls seen")
    return rule, "inferred: " + "; ".join(seen)


# --- the whole spec ------------------------------------------------------------------------------


def sample(frame: pd.DataFrame, rows: int = SAMPLE_ROWS, seed: int = 0) -> pd.DataFrame:
    return frame if len(frame) <= rows else frame.sample(n=rows, random_state=seed).sort_index()


def infer_spec(
    frame: pd.DataFrame, name: str, target: str, *, task: str | None = None, positive: list[str] | None = None,
    positive_when_gt: float | None = None, time: str | None = None, source: str = "",
) -> Draft:
    """A complete spec draft for ``frame`` (use a sample: see :func:`sample`)."""
    problems = [f"column {c!r} (--{opt}) is not in the data" for c, opt in ((target, "target"), (time, "time")) if c and c not in frame.columns]
    if problems:
        raise SpecError("; ".join(problems) + f"; columns: {list(frame.columns)}")
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", name):
        raise SpecError(f"model name {name!r}: use lowercase letters, digits and dashes (it names the MLflow model too)")
    dtypes = {column: column_dtype(frame[column]) for column in frame.columns}
    if time is not None and dtypes[time] != "datetime":
        raise SpecError(f"--time {time!r} holds {dtypes[time]} values, not timestamps")
    n = len(frame)
    task, target_map, comments = infer_target(frame[target], target, task, positive, positive_when_gt)
    data: dict[str, Any] = {
        "name": name,
        "description": f"{name}: predicts {target} ({task}). Written by `leanops spec init`; review every line.",
        "task": task,
        "target": target_map,
    }
    if time is not None:
        data["time"] = {"column": time, "timezone": "UTC"}
        comments["time.column"] = "given: the split trains on the past and holds out the most recent rows"

    label = _label_values(frame[target], task, target_map)
    features, left_out = [], {}
    for column in frame.columns:
        if column in (target, time):
            continue
        dtype = dtypes[column]
        reason = _leave_out_reason(column, frame[column], dtype)
        if reason:
            left_out[column] = reason
            continue
        kind = "numeric" if dtype in ("integer", "number") else "categorical"
        features.append({"name": column, "kind": kind})
        n_distinct = frame[column].nunique()
        comments[f"features.{column}"] = (
            f"inferred: {dtype}, {n_distinct:,} distinct value{'s' if n_distinct != 1 else ''} seen"
            + leak_warning(frame[column], label)
        )
    if not features:
        raise SpecError(f"no usable feature column besides the target {target!r}: {left_out}")
    if data["target"]["name"] in [f["name"] for f in features]:
        data["target"]["name"] += "_target"
    data["features"] = features

    columns = {}
    for column in [f["name"] for f in features] + [target] + ([time] if time else []):
        role = "target" if column == target else "time" if column == time else "feature"
        rule, why = column_rule(frame[column], dtypes[column], role)
        columns[column] = rule
        comments[f"contract.columns.{column}"] = why
    duplicates = float(frame.duplicated().mean()) if n else 0.0
    data["contract"] = {
        "min_rows": min(100, n),
        "max_duplicate_share": _null_allowance(duplicates),
        "columns": columns,
    }
    comments["contract.min_rows"] = f"a batch with fewer rows is refused (the sample has {n:,})"
    comments["contract.max_duplicate_share"] = f"inferred: {duplicates:.2%} duplicated rows in the sample"
    primary = PRIMARY_METRIC[task]
    data["metric"] = {"primary": primary, "guardrails": [{"name": g, "tolerance": 0.01} for g in GUARDRAILS[task]]}
    comments["metric.primary"] = f"the usual first choice for {task}"
    data["model"] = {"params": {"n_estimators": 300, "max_depth": 5, "learning_rate": 0.05}, "baseline": "linear"}
    data["tuning"] = {"enabled": False}
    comments["tuning.enabled"] = "turn on once the model trains: an Optuna study before each retrain"
    data["promotion"] = {"approval": "auto", "must_beat_baseline": True}
    comments["promotion.approval"] = "manual: a person approves each promotion in the Prefect UI"
    data["retrain_window"] = {"prefix": f"incoming/{name}/"}
    comments["retrain_window.prefix"] = "batches land here (in the bucket); their nested folders do not count"
    if time is not None:
        # A window by time, not by object count: a burst of small files cannot push real batches out.
        data["retrain_window"] |= {"days": 180, "min_rows": min(1000, n)}
        comments["retrain_window.days"] = f"a retrain learns from the last 180 days by {time}, counted from the newest row"
        comments["retrain_window.min_rows"] = "reaching further back when those days hold fewer rows"
    else:
        comments["retrain_window.prefix"] += "; without a time column a retrain reads every batch landed there"
    header = [f"Model spec for {name}, inferred by `leanops spec init` from {source or 'a data sample'} ({n:,} rows)."]
    return Draft(data, comments, left_out, header)


# --- writing it ----------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """numpy scalars to Python ones; whole floats stay floats."""
    return value.item() if hasattr(value, "item") else value


def _scalar(value: Any) -> str:
    value = _plain(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value)) if abs(value) < 1e15 else repr(value)
    if isinstance(value, str):
        plain = value
        try:
            if plain and yaml.safe_load(plain) == value and re.fullmatch(r"[A-Za-z0-9_./ -]+", plain) and plain.strip() == plain:
                return plain
        except yaml.YAMLError:
            pass
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(value)


def _flow(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_scalar(k)}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    return _scalar(value)


def _with_comment(text: str, comment: str | None) -> str:
    return f"{text}  # {comment}" if comment else text


def render(draft: Draft) -> str:
    """The draft as commented YAML."""
    lines = [f"# {line}" for line in draft.header]
    comments = draft.comments

    def block(mapping: dict[str, Any], path: str, indent: int) -> None:
        pad = " " * indent
        for key, value in mapping.items():
            here = f"{path}{key}"
            if key == "features" and not path:
                lines.append(f"{pad}features:")
                for feature in value:
                    lines.append(_with_comment(f"{pad}  - {_flow(feature)}", comments.get(f"features.{feature['name']}")))
                for column, reason in draft.left_out.items():
                    lines.append(f"{pad}  # - {{name: {_scalar(column)}}}  # {reason}")
            elif key == "columns" and path == "contract.":
                lines.append(f"{pad}columns:")
                for column, rule in value.items():
                    lines.append(_with_comment(f"{pad}  {_scalar(column)}: {_flow(rule)}", comments.get(f"contract.columns.{column}")))
            elif isinstance(value, dict):
                lines.append(_with_comment(f"{pad}{key}:", comments.get(here)))
                block(value, f"{here}.", indent + 2)
            else:
                lines.append(_with_comment(f"{pad}{key}: {_flow(value)}", comments.get(here)))

    block(draft.data, "", 0)
    return "\n".join(lines) + "\n"


def generate(frame: pd.DataFrame, name: str, target: str, **options: Any) -> tuple[str, Spec]:
    """The spec YAML for ``frame`` and the Spec it loads as (so a written spec is known to load)."""
    text = render(infer_spec(sample(frame), name, target, **options))
    return text, parse_spec(yaml.safe_load(text), f"the spec inferred for {name}")
