"""Drift checks: is a batch still like the data the champion learned from? The only Evidently user.

Callers pass *feature frames*: the spec's features as columns (derived ones, such as a weekday
computed from the time column, included when the caller built them with ``leanops.features``).
Only spec features present in both frames are compared; spec features absent from both are listed
in ``DriftResult.skipped_features``; a feature present on one side only is an input error.

Two engines give the same numbers:

- ``"fast"`` (default): effect sizes in numpy/scipy on a seeded sample of at most
  ``spec.drift.sample_cap`` rows a side. The formulas are Evidently 0.7's own (normed Wasserstein
  with ``max(std(reference), 0.001)``, Jensen-Shannon with natural log over the union of categories,
  PSI on Evidently's bins), which ``tests/test_drift.py`` checks against Evidently on real data.
- ``"evidently"``: the same sample through Evidently's ``DataDriftPreset`` with explicit column
  types, methods and thresholds. Slower; useful to cross-check.

The human-facing HTML/JSON report comes from :func:`build_evidently_report`.

Decisions, all from ``spec.drift``:

- a side with fewer than ``min_rows`` rows gives status ``"inconclusive"`` (never ``"drift"``);
- a feature drifts when its score >= ``threshold`` (``numeric_threshold`` for numeric features, if set);
  the batch drifts (``dataset_drift``) when the share of drifted features (importance-weighted if
  ``weight_by_importance``) >= ``dataset_drift_share``;
- prediction drift, against ``prediction_threshold``: the champion's scores (binary, regression) with the
  numeric method, or its predicted classes (multiclass: the predicted class distribution) with the
  categorical method. Reference scores must come from rows the champion did not train on (its holdout):
  in-sample scores are more confident than any new batch's, which reads as drift;
- ``status`` is ``"drift"`` when the dataset or the predictions drift, else ``"ok"``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal, Mapping, Sequence

import numpy as np
import pandas as pd

from leanops.errors import BatchReadError, DriftInputError, ObjectNotFound
from leanops.results import DriftPersistence, DriftResult, FeatureDrift, PerformanceCheck
from leanops.spec import Spec

Engine = Literal["fast", "evidently"]

# Evidently's stattest names for our methods (the registry keys in evidently.legacy.calculations.stattests).
_EVIDENTLY_METHOD = {"wasserstein": "wasserstein", "jensenshannon": "jensenshannon", "psi": "psi"}
_PREDICTION_COLUMN = "prediction_score"


# --- input preparation ---------------------------------------------------------------------------


def _feature_columns(reference: pd.DataFrame, current: pd.DataFrame, spec: Spec) -> tuple[list[tuple[str, str]], list[str]]:
    """(name, kind) of the spec features to compare, and the spec features absent from both frames."""
    columns: list[tuple[str, str]] = []
    skipped: list[str] = []
    one_sided: list[str] = []
    for feature in spec.features:
        in_ref, in_cur = feature.name in reference.columns, feature.name in current.columns
        if in_ref and in_cur:
            columns.append((feature.name, feature.kind))
        elif in_ref or in_cur:
            one_sided.append(f"{feature.name} (only in the {'reference' if in_ref else 'current'} frame)")
        else:
            skipped.append(feature.name)
    if one_sided:
        raise DriftInputError(f"features missing on one side of the drift check: {', '.join(one_sided)}")
    if not columns:
        raise DriftInputError(
            f"no spec feature of {spec.name!r} is in both frames (expected some of {spec.feature_names}); "
            "pass feature frames"
        )
    return columns, skipped


def _sample_positions(n_rows: int, cap: int, seed: int, stream: int) -> np.ndarray | None:
    """Row positions of a seeded sample without replacement (sorted), or None when no sampling is needed.

    ``stream`` separates the reference (0) from the current (1) draw, so both are reproducible and
    an array of the same length as a frame (the champion's scores) gets the same rows as that frame.
    """
    if n_rows <= cap:
        return None
    rng = np.random.default_rng([seed, stream])
    return np.sort(rng.choice(n_rows, size=cap, replace=False))


def _take(frame: pd.DataFrame, columns: Sequence[str], positions: np.ndarray | None) -> pd.DataFrame:
    # Column by column: selecting the columns of a large frame first would copy all of it.
    if positions is None:
        return frame[list(columns)]
    return pd.DataFrame({name: frame[name].take(positions).reset_index(drop=True) for name in columns})


@dataclass(frozen=True)
class _Samples:
    reference: pd.DataFrame
    current: pd.DataFrame
    reference_positions: np.ndarray | None
    current_positions: np.ndarray | None


def _sample_sides(reference: pd.DataFrame, current: pd.DataFrame, columns: Sequence[tuple[str, str]], spec: Spec, cap: int) -> _Samples:
    """The seeded sample of at most ``cap`` rows a side (reference stream 0, current stream 1), normalised."""
    cfg, names = spec.drift, [name for name, _ in columns]
    ref_pos = _sample_positions(len(reference), cap, cfg.seed, 0)
    cur_pos = _sample_positions(len(current), cap, cfg.seed, 1)
    return _Samples(
        normalise_features(_take(reference, names, ref_pos), columns),
        normalise_features(_take(current, names, cur_pos), columns),
        ref_pos,
        cur_pos,
    )


def prediction_values(scores: Any, spec: Spec) -> tuple[pd.Series, str]:
    """What prediction drift compares, and its kind: a multiclass model's predicted class per row
    (categorical; from a rows x classes probability matrix, or the class labels themselves), otherwise
    the score or prediction itself (numeric)."""
    values = np.asarray(scores)
    if spec.task != "multiclass":
        return pd.Series(values.astype("float64").ravel()), "numeric"
    classes = list(spec.target.classes)
    if values.ndim == 2:
        if values.shape[1] != len(classes):
            raise DriftInputError(f"multiclass scores have {values.shape[1]} columns for the {len(classes)} classes {classes}")
        values = np.asarray(classes, dtype=object)[values.argmax(axis=1)]
    return pd.Series(values.astype(str), dtype=object), "categorical"


def _sample_predictions(scores: Any, spec: Spec, stream: int, cap: int) -> tuple[pd.Series, str]:
    values, kind = prediction_values(scores, spec)
    positions = _sample_positions(len(values), cap, spec.drift.seed, stream)
    return (values if positions is None else values.take(positions).reset_index(drop=True)), kind


def numeric_values(series: pd.Series, name: str = "") -> np.ndarray:
    """float64 values with NaN for every kind of missing (pd.NA, None, nullable dtypes)."""
    name = name or str(series.name)
    if isinstance(series.dtype, pd.CategoricalDtype):
        series = series.astype(series.cat.categories.dtype)
    if pd.api.types.is_bool_dtype(series.dtype) or pd.api.types.is_numeric_dtype(series.dtype):
        return series.to_numpy(dtype="float64", na_value=np.nan)
    if series.dtype == object:
        converted = pd.to_numeric(series, errors="coerce")
        bad = converted.isna() & series.notna()
        if bad.any():
            examples = ", ".join(repr(v) for v in series[bad].unique()[:5])
            raise DriftInputError(f"numeric feature {name!r} holds non-numeric values: {examples}")
        return converted.to_numpy(dtype="float64", na_value=np.nan)
    raise DriftInputError(f"numeric feature {name!r} has dtype {series.dtype}, which is not numeric")


def _label(value: Any) -> str:
    # An integer id read as float (because of a missing value elsewhere) keeps its integer label.
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    return str(value)


def category_labels(series: pd.Series) -> pd.Series:
    """object dtype: string labels, np.nan for missing; the same value gets the same label on both sides."""
    uniques = pd.unique(series.dropna())
    mapping = {value: _label(value) for value in uniques}
    values = series.astype(object).map(mapping)
    return values.where(series.notna(), np.nan).astype(object)


def normalise_features(frame: pd.DataFrame, columns: Sequence[tuple[str, str]]) -> pd.DataFrame:
    """Plain dtypes Evidently 0.7 accepts: numeric -> float64 (NaN), categorical -> object labels (NaN).

    Nullable ``Int64``/``string``/``boolean`` dtypes and ``pd.NA`` break Evidently 0.7 (and make
    ``1`` and ``1.0`` different categories), so both engines see the same normalised frame.
    """
    out = {}
    for name, kind in columns:
        if kind == "numeric":
            out[name] = numeric_values(frame[name], name)
        else:
            out[name] = category_labels(frame[name]).to_numpy(dtype=object)
    return pd.DataFrame(out, index=pd.RangeIndex(len(frame)))


def _unknown_categories(reference: pd.DataFrame, current: pd.DataFrame, names: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """On the full frames (not the sample): a rare new category is exactly what sampling would miss."""
    found: dict[str, tuple[str, ...]] = {}
    for name in names:
        ref_labels = {_label(v) for v in pd.unique(reference[name].dropna())}
        cur_labels = {_label(v) for v in pd.unique(current[name].dropna())}
        found[name] = tuple(sorted(cur_labels - ref_labels))
    return found


# --- effect sizes (Evidently 0.7's formulas, vectorised) -----------------------------------------


def wasserstein_normed(reference: np.ndarray, current: np.ndarray) -> float:
    """Wasserstein distance divided by the reference std (floored at 0.001, as Evidently does)."""
    from scipy.stats import wasserstein_distance

    norm = max(float(np.std(reference)), 0.001)
    return float(wasserstein_distance(reference, current) / norm)


def _category_shares(reference: pd.Series, current: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    ref_counts = reference.value_counts(sort=False)
    cur_counts = current.value_counts(sort=False)
    keys = ref_counts.index.union(cur_counts.index)
    ref_share = ref_counts.reindex(keys, fill_value=0).to_numpy(dtype="float64") / len(reference)
    cur_share = cur_counts.reindex(keys, fill_value=0).to_numpy(dtype="float64") / len(current)
    return ref_share, cur_share


def _binned_shares(reference: pd.Series, current: pd.Series, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Evidently's ``get_binned_data``: Sturges bins on both samples for numeric features with more
    than 20 distinct reference values, otherwise shares per distinct value."""
    if kind == "numeric" and reference.nunique() > 20:
        ref = reference.to_numpy(dtype="float64")
        cur = current.to_numpy(dtype="float64")
        bins = np.histogram_bin_edges(np.concatenate([ref, cur]), bins="sturges")
        return np.histogram(ref, bins)[0] / len(ref), np.histogram(cur, bins)[0] / len(cur)
    return _category_shares(reference, current)


def _fill_zeroes(shares: np.ndarray) -> np.ndarray:
    # Evidently's rule for PSI: an empty bin gets a tiny share so the log stays finite.
    shares = shares.copy()
    smallest = shares[shares != 0].min()
    shares[shares == 0] = smallest / 10**6 if smallest <= 0.0001 else 0.0001
    return shares


def jensenshannon_distance(reference: pd.Series, current: pd.Series, kind: str = "categorical") -> float:
    from scipy.spatial import distance

    ref_share, cur_share = _binned_shares(reference, current, kind)
    return float(distance.jensenshannon(ref_share, cur_share))


def psi(reference: pd.Series, current: pd.Series, kind: str) -> float:
    ref_share, cur_share = _binned_shares(reference, current, kind)
    ref_share, cur_share = _fill_zeroes(ref_share), _fill_zeroes(cur_share)
    return float(np.sum((ref_share - cur_share) * np.log(ref_share / cur_share)))


def _clean(series: pd.Series, kind: str) -> pd.Series:
    if kind == "numeric":
        values = series.to_numpy(dtype="float64")
        return pd.Series(values[np.isfinite(values)])
    return series.dropna()


def _score(reference: pd.Series, current: pd.Series, kind: str, method: str) -> tuple[float, str]:
    """(score, note) for one feature on already-normalised columns; NaN plus a note when a side is empty."""
    ref, cur = _clean(reference, kind), _clean(current, kind)
    empty = [side for side, values in (("reference", ref), ("current", cur)) if len(values) == 0]
    if empty:
        return float("nan"), f"no values in the {' and '.join(empty)} data"
    if method == "wasserstein":
        return wasserstein_normed(ref.to_numpy(), cur.to_numpy()), ""
    if method == "jensenshannon":
        return jensenshannon_distance(ref, cur, kind), ""
    if method == "psi":
        return psi(ref, cur, kind), ""
    raise DriftInputError(f"unknown drift method {method!r}")


def _method_for(kind: str, spec: Spec) -> str:
    return spec.drift.numeric_method if kind == "numeric" else spec.drift.categorical_method


def threshold_for(kind: str, spec: Spec) -> float:
    numeric = spec.drift.numeric_threshold
    return numeric if kind == "numeric" and numeric is not None else spec.drift.threshold


# --- the check ---------------------------------------------------------------------------------


def _weights(names: Sequence[str], feature_importance: Mapping[str, float] | None, spec: Spec) -> dict[str, float] | None:
    if not spec.drift.weight_by_importance:
        return None
    if not feature_importance:
        raise DriftInputError(
            f"spec {spec.name!r} weighs drift by feature importance (drift.weight_by_importance) "
            "but no feature_importance was given"
        )
    negative = {k: v for k, v in feature_importance.items() if v < 0 or not math.isfinite(v)}
    if negative:
        raise DriftInputError(f"feature importances must be finite and >= 0: {negative}")
    weights = {name: float(feature_importance.get(name, 0.0)) for name in names}
    if sum(weights.values()) <= 0:
        raise DriftInputError(
            f"no importance for any checked feature {list(names)}; importances are keyed by spec feature "
            f"name (sum one-hot parts per feature first), got keys {sorted(feature_importance)[:10]}"
        )
    return weights


def _prediction_scores(reference_scores: Any, current_scores: Any, spec: Spec) -> tuple[float, bool] | None:
    if reference_scores is None and current_scores is None:
        return None
    if reference_scores is None or current_scores is None:
        raise DriftInputError("prediction drift needs both reference_scores and current_scores")
    cfg = spec.drift
    cap = cfg.sample_cap
    (ref, kind), (cur, _) = _sample_predictions(reference_scores, spec, 0, cap), _sample_predictions(current_scores, spec, 1, cap)
    score, note = _score(ref, cur, kind, _method_for(kind, spec))
    if note:
        raise DriftInputError(f"prediction scores: {note}")
    return score, score >= cfg.prediction_threshold


def compute_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    spec: Spec,
    *,
    reference_scores: Sequence[float] | np.ndarray | None = None,
    current_scores: Sequence[float] | np.ndarray | None = None,
    feature_importance: Mapping[str, float] | None = None,
    engine: Engine = "fast",
) -> DriftResult:
    """Compare a current feature frame with the reference the champion was trained on.

    Args:
        reference: the reference feature frame (e.g. the champion's training sample).
        current: the new batch as a feature frame (same feature columns).
        spec: the model spec; ``spec.drift`` holds every method, threshold and size.
        reference_scores / current_scores: the champion's predictions for prediction drift, both or
            neither: positive-class probabilities (binary), predictions (regression), or rows x classes
            probabilities or class labels (multiclass). Reference scores come from rows the champion did
            not train on (e.g. its holdout); they need not align with ``reference``.
        feature_importance: spec feature name -> importance (>= 0); required when
            ``spec.drift.weight_by_importance``; features missing from it weigh 0.
        engine: ``"fast"`` (numpy/scipy) or ``"evidently"`` (same sample through Evidently).

    Returns a :class:`DriftResult` with no report locations (callers add them with ``with_report``).
    Raises :class:`DriftInputError` on frames that cannot be compared.
    """
    if engine not in ("fast", "evidently"):
        raise DriftInputError(f"unknown drift engine {engine!r}; use 'fast' or 'evidently'")
    cfg = spec.drift
    columns, skipped = _feature_columns(reference, current, spec)
    names = [name for name, _ in columns]
    categorical = [name for name, kind in columns if kind == "categorical"]
    n_ref, n_cur = len(reference), len(current)
    common = dict(
        n_reference=n_ref,
        n_current=n_cur,
        dataset_drift_share=cfg.dataset_drift_share,
        weighted=cfg.weight_by_importance,
        engine=engine,
        skipped_features=tuple(skipped),
    )

    if n_ref < cfg.min_rows or n_cur < cfg.min_rows:
        small = [f"{side} has {n:,} rows" for side, n in (("reference", n_ref), ("current batch", n_cur)) if n < cfg.min_rows]
        return DriftResult(
            status="inconclusive",
            n_reference_sampled=0,
            n_current_sampled=0,
            features=(),
            drift_share=0.0,
            dataset_drift=False,
            drifted_features=(),
            reason=f"{' and '.join(small)}, fewer than drift.min_rows={cfg.min_rows}",
            unknown_categories=_unknown_categories(reference, current, categorical) if n_cur else {},
            **common,
        )

    weights = _weights(names, feature_importance, spec)
    samples = _sample_sides(reference, current, columns, spec, cfg.sample_cap)
    ref_sample, cur_sample = samples.reference, samples.current

    if engine == "fast":
        scored = {name: _score(ref_sample[name], cur_sample[name], kind, _method_for(kind, spec)) for name, kind in columns}
    else:
        scored = _evidently_scores(ref_sample, cur_sample, columns, spec)

    features = []
    for name, kind in columns:
        score, note = scored[name]
        threshold = threshold_for(kind, spec)
        drifted = bool(note) or score >= threshold
        features.append(FeatureDrift(name, kind, _method_for(kind, spec), score, threshold, drifted, note))

    drifted_names = tuple(sorted(f.name for f in features if f.drifted))
    if weights is None:
        share = len(drifted_names) / len(features)
    else:
        share = sum(weights[f.name] for f in features if f.drifted) / sum(weights.values())
    dataset_drift = share >= cfg.dataset_drift_share

    prediction = _prediction_scores(reference_scores, current_scores, spec)
    prediction_drift = prediction[1] if prediction else None
    status = "drift" if dataset_drift or prediction_drift else "ok"
    reasons = []
    if dataset_drift:
        reasons.append(f"{share:.0%} of features drifted (>= {cfg.dataset_drift_share:.0%})")
    if prediction_drift:
        what = "predicted class shares" if spec.task == "multiclass" else "prediction scores"
        reasons.append(f"{what} drifted ({prediction[0]:.3f} >= {cfg.prediction_threshold})")
    return DriftResult(
        status=status,
        n_reference_sampled=len(ref_sample),
        n_current_sampled=len(cur_sample),
        features=tuple(features),
        drift_share=share,
        dataset_drift=dataset_drift,
        drifted_features=drifted_names,
        reason="; ".join(reasons),
        prediction_drift_score=prediction[0] if prediction else None,
        prediction_drift_threshold=cfg.prediction_threshold if prediction else None,
        prediction_drift=prediction_drift,
        unknown_categories=_unknown_categories(reference, current, categorical),
        **common,
    )


# --- performance --------------------------------------------------------------------------------


def check_performance(
    metric: str, value: float, reference_value: float, spec: Spec, *, n_rows: int | None = None,
    per_class_recall: Mapping[str, float] | None = None,
) -> PerformanceCheck:
    """Is the champion's metric on a labelled batch worse than its registered holdout metric by more
    than ``spec.drift.performance_tolerance`` (absolute), in the metric's direction? ``per_class_recall``
    (classifiers) is reported with it, not judged."""
    for label, number in (("value", value), ("reference_value", reference_value)):
        if number is None or not math.isfinite(float(number)):
            raise DriftInputError(f"performance check of {metric}: {label} must be a finite number, got {number!r}")
    direction = spec.metric.direction(metric)
    tolerance = spec.drift.performance_tolerance
    worse_by = (reference_value - value) if direction == "maximize" else (value - reference_value)
    return PerformanceCheck(
        metric=metric,
        value=float(value),
        reference_value=float(reference_value),
        direction=direction,
        tolerance=tolerance,
        degraded=worse_by > tolerance,
        n_rows=n_rows,
        per_class_recall=dict(per_class_recall or {}),
    )


# --- Evidently -----------------------------------------------------------------------------------


def _evidently_definition(columns: Sequence[tuple[str, str]]):
    from evidently import DataDefinition

    return DataDefinition(
        numerical_columns=[name for name, kind in columns if kind == "numeric"],
        categorical_columns=[name for name, kind in columns if kind == "categorical"],
    )


def _run_evidently(reference: pd.DataFrame, current: pd.DataFrame, columns: Sequence[tuple[str, str]], spec: Spec, extra: dict[str, tuple[str, float]] | None = None):
    """An Evidently snapshot of DataDriftPreset with explicit types, methods and thresholds.
    ``extra``: more columns, name -> (kind, threshold), e.g. the prediction column."""
    from evidently import Dataset, Report
    from evidently.presets import DataDriftPreset

    extra = extra or {}
    definition = _evidently_definition([*columns, *((name, kind) for name, (kind, _) in extra.items())])
    methods = {name: _EVIDENTLY_METHOD[_method_for(kind, spec)] for name, kind in columns}
    thresholds = {name: threshold_for(kind, spec) for name, kind in columns}
    for name, (kind, threshold) in extra.items():
        methods[name] = _EVIDENTLY_METHOD[_method_for(kind, spec)]
        thresholds[name] = threshold
    preset = DataDriftPreset(
        columns=list(methods),
        drift_share=spec.drift.dataset_drift_share,
        per_column_method=methods,
        per_column_threshold=thresholds,
    )
    current_ds = Dataset.from_pandas(current, data_definition=definition)
    reference_ds = Dataset.from_pandas(reference, data_definition=definition)
    return Report([preset]).run(current_ds, reference_ds)  # Evidently 0.7: current first


def evidently_column_scores(snapshot_dict: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per-column ``{score, method, threshold}`` from ``snapshot.dict()["metrics"]`` (ValueDrift entries)."""
    scores: dict[str, dict[str, Any]] = {}
    for metric in snapshot_dict.get("metrics", []):
        config = metric.get("config", {})
        if str(config.get("type", "")).endswith("ValueDrift"):
            scores[config["column"]] = {
                "score": float(metric["value"]),
                "method": config.get("method"),
                "threshold": config.get("threshold"),
            }
    return scores


def _evidently_scores(reference: pd.DataFrame, current: pd.DataFrame, columns: Sequence[tuple[str, str]], spec: Spec) -> dict[str, tuple[float, str]]:
    scored: dict[str, tuple[float, str]] = {}
    computable = []
    for name, kind in columns:
        if _has_values(reference[name], current[name], kind):
            computable.append((name, kind))
        else:
            # Evidently refuses a column without values: the fast engine's NaN score and note stand in.
            scored[name] = _score(reference[name], current[name], kind, _method_for(kind, spec))
    if computable:
        found = evidently_column_scores(_run_evidently(reference, current, computable, spec).dict())
        for name, _ in computable:
            scored[name] = (found[name]["score"], "")
    return scored


def _beside(sample: pd.DataFrame, predictions: pd.Series) -> pd.DataFrame:
    """The feature sample with the prediction column, both padded with missing values to the longer one."""
    rows = pd.RangeIndex(max(len(sample), len(predictions)))
    return sample.reindex(rows).assign(**{_PREDICTION_COLUMN: predictions.reindex(rows).to_numpy()})


# Evidently draws every category of a column: ~1.8 ms each here (20,000 unseen destinations took 36 s, 100,000
# did not finish in 10 minutes). Such a column keeps its score in the DriftResult and stays out of the report.
REPORT_MAX_CATEGORIES = 1_000


def _too_many_categories(reference: pd.Series, current: pd.Series, kind: str) -> bool:
    return kind == "categorical" and pd.concat([reference, current], ignore_index=True).nunique() > REPORT_MAX_CATEGORIES


def _has_values(reference: pd.Series, current: pd.Series, kind: str) -> bool:
    return len(_clean(reference, kind)) > 0 and len(_clean(current, kind)) > 0


@dataclass(frozen=True)
class EvidentlyReport:
    html: str
    """A self-contained HTML page (~5 MB)."""
    json: dict[str, Any]
    """``snapshot.dict()``: metrics (``DriftedColumnsCount``, one ``ValueDrift`` per column) and tests."""
    column_scores: dict[str, dict[str, Any]]

    def json_text(self) -> str:
        return json.dumps(self.json, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def build_evidently_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    spec: Spec,
    *,
    reference_scores: Sequence[float] | np.ndarray | None = None,
    current_scores: Sequence[float] | np.ndarray | None = None,
    sample_rows: int | None = None,
) -> EvidentlyReport:
    """Evidently's drift report for humans, with the same settings as :func:`compute_drift`.

    ``sample_rows`` bounds the seeded sample of each side (default ``spec.drift.sample_cap``, the
    check's own sample, whose scores the report then repeats). Evidently costs far more per row than
    the check (at 1M x 50 the report on the check's 100k sample took 18.5 s and 1.1 GB, the check
    3.7 s), so the drift monitor passes ``Settings.drift_report_sample_rows``: the report then shows
    the same distributions drawn from fewer rows, and scores near a threshold may differ from the
    verdict's by sampling noise. The verdict is the check's, never the report's.

    Scores, when given, are the ones :func:`compute_drift` takes (the reference's from rows the champion
    did not train on, so they need not align with ``reference``). Their seeded sample appears as the
    column ``prediction_score`` with ``spec.drift.prediction_threshold``, beside the features; the shorter
    side is padded with missing values, which Evidently leaves out per column, so every score matches
    :func:`compute_drift`. Callers store ``html`` and ``json_text()`` (e.g. with
    ``leanops.storage.write_bytes``) and record where with ``DriftResult.with_report``.
    """
    cap = spec.drift.sample_cap if sample_rows is None else sample_rows
    if cap < 1:
        raise DriftInputError(f"the report's sample needs at least one row a side, got sample_rows={sample_rows}")
    columns, _ = _feature_columns(reference, current, spec)
    samples = _sample_sides(reference, current, columns, spec, cap)
    ref, cur = samples.reference, samples.current
    computable = [(n, k) for n, k in columns if _has_values(ref[n], cur[n], k) and not _too_many_categories(ref[n], cur[n], k)]
    extra: dict[str, tuple[str, float]] = {}
    if reference_scores is not None or current_scores is not None:
        if reference_scores is None or current_scores is None:
            raise DriftInputError("the report needs both reference_scores and current_scores, or neither")
        (ref_predictions, kind), (cur_predictions, _) = _sample_predictions(reference_scores, spec, 0, cap), _sample_predictions(current_scores, spec, 1, cap)
        ref, cur = _beside(ref, ref_predictions), _beside(cur, cur_predictions)
        extra[_PREDICTION_COLUMN] = (kind, spec.drift.prediction_threshold)
    snapshot = _run_evidently(ref, cur, computable, spec, extra)
    as_dict = snapshot.dict()
    return EvidentlyReport(
        html=snapshot.get_html_str(as_iframe=False),
        json=as_dict,
        column_scores=evidently_column_scores(as_dict),
    )


# --- history and persistence --------------------------------------------------------------------

HISTORY_COLUMNS = (
    "checked_at",
    "model",
    "version",
    "batch_uri",
    "status",
    "drift_share",
    "dataset_drift",
    "prediction_drift",
    "drifted_features",
    "n_current",
)


def history_record(result: DriftResult, *, model: str, version: str | None, batch_uri: str, checked_at: datetime | None = None) -> dict[str, Any]:
    """One history row; ``drifted_features`` is comma-joined so the table stays flat (CSV-friendly)."""
    when = checked_at or datetime.now(timezone.utc)
    if when.tzinfo is None:
        raise DriftInputError("checked_at must be timezone-aware (UTC)")
    return {
        "checked_at": pd.Timestamp(when).tz_convert("UTC"),
        "model": model,
        "version": "" if version is None else str(version),
        "batch_uri": batch_uri,
        "status": result.status,
        "drift_share": float(result.drift_share),
        "dataset_drift": bool(result.dataset_drift),
        "prediction_drift": bool(result.prediction_drift),
        "drifted_features": ",".join(result.drifted_features),
        "n_current": int(result.n_current),
    }


def _history_exists(uri: str, settings=None) -> bool:
    from leanops import storage

    if not storage.is_s3(uri):
        return storage.local_path(uri).exists()
    try:
        storage.stat(uri, settings)  # a HEAD request, not a listing of the prefix
    except ObjectNotFound:
        return False
    return True


def read_history(uri: str, settings=None) -> pd.DataFrame:
    """The drift history table; an empty one (with the columns) when nothing was recorded yet."""
    from leanops import storage

    if not _history_exists(uri, settings):
        return pd.DataFrame({name: pd.Series(dtype=_HISTORY_DTYPES[name]) for name in HISTORY_COLUMNS})
    frame, _ = storage.read_table(uri, settings)
    missing = [c for c in HISTORY_COLUMNS if c not in frame.columns]
    if missing:
        raise BatchReadError(f"{uri}: not a drift history table (missing columns {missing})")
    return frame


_HISTORY_DTYPES = {
    "checked_at": "datetime64[ns, UTC]",
    "model": object,
    "version": object,
    "batch_uri": object,
    "status": object,
    "drift_share": "float64",
    "dataset_drift": bool,
    "prediction_drift": bool,
    "drifted_features": object,
    "n_current": "int64",
}


def append_history(
    uri: str,
    result: DriftResult,
    *,
    model: str,
    version: str | None,
    batch_uri: str,
    checked_at: datetime | None = None,
    settings=None,
) -> pd.DataFrame:
    """Append one check to the parquet history at ``uri`` (local path or s3://) and return the table.

    A batch checked again against the same champion (a retried task, a re-announced object) replaces
    its row rather than counting twice towards drift persistence. Read-modify-write of one object:
    callers that may run side by side must serialise per history (tasks/monitor.py holds a per-model
    lock), or one check can drop another's row.
    """
    from leanops import storage

    record = history_record(result, model=model, version=version, batch_uri=batch_uri, checked_at=checked_at)
    history = read_history(uri, settings)
    same_check = (
        (history["model"] == model)
        & (history["batch_uri"] == batch_uri)
        & (history["version"].fillna("").astype(str) == ("" if version is None else str(version)))
    )
    history = history[~same_check]
    row = pd.DataFrame([record]).astype(_HISTORY_DTYPES)
    table = row if history.empty else pd.concat([history[list(HISTORY_COLUMNS)].astype(_HISTORY_DTYPES), row], ignore_index=True)
    storage.write_table(table, uri, settings)
    return table


def drift_persists(history: pd.DataFrame, *, model: str, k: int, n: int) -> DriftPersistence:
    """Did drift hold in at least ``k`` of the last ``n`` conclusive checks of ``model``?

    Inconclusive checks (too few rows) say nothing about drift and are not counted. With fewer than
    ``n`` conclusive checks recorded, the ones there are count (k of them must still have drifted).
    Use ``spec.drift.persistence_k`` / ``persistence_n``.
    """
    if not 1 <= k <= n:
        raise DriftInputError(f"persistence needs 1 <= k <= n, got k={k}, n={n}")
    rows = history[(history["model"] == model) & (history["status"] != "inconclusive")]
    last = rows.sort_values("checked_at", kind="stable").tail(n)
    drift_checks = int((last["status"] == "drift").sum())
    return DriftPersistence(model=model, k=k, n=n, checks_considered=len(last), drift_checks=drift_checks, persists=drift_checks >= k)
