"""Training on a Dask cluster (spec ``model.engine: dask``) for a retrain window larger than one machine's
memory. The only user of dask, distributed and ``xgboost.dask``.

The window is a Dask DataFrame with one partition per landed object, read by the storage adapter inside
each task (so S3 endpoint and credentials resolve as everywhere else; s3fs is not needed). Each partition
is read once, checked against the contract, labelled, and kept on the workers in a compact form (text
columns as pandas categories, the time column parsed); everything after that runs on those partitions:

- the window's rows (``retrain_window.days / since / min_rows``) and the time-ordered split, with the
  holdout the most recent ``holdout_fraction`` of rows (rows tied with the cutoff time go to the holdout);
- the feature step is the single-machine path's (``modeling.build_model``'s ``features``), fitted the same
  way: its casts are stateless and its ordinal encoders' categories are the sorted distinct values of the
  fit rows, computed over every partition (not a sample), so a category seen once still gets its code.
  That fitted step transforms each partition on the workers; ``xgboost.dask`` trains on the result;
- the booster is loaded into a plain ``XGBClassifier`` / ``XGBRegressor`` behind that feature step: the
  registered pipeline is the single-machine kind and serves without Dask.

What comes back to this process is bounded apart from the holdout: the holdout rows (evaluation and
registration use them as the single-machine path does: ``holdout_fraction`` of the window must fit here),
and a seeded sample of ``dask_sample_rows`` fit rows (the drift reference, the input example, and the
baseline, which is fitted on that sample rather than on every row).
"""

from __future__ import annotations

import operator
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import pandas as pd

from leanops import batches, contract, storage
from leanops.errors import BatchReadError, ClusterUnavailable, ContractViolation
from leanops.features import (
    FEATURES_VERSION,
    class_count_problems,
    feature_frame,
    feature_groups,
    feature_order,
    make_target,
    model_input_columns,
)
from leanops.modeling import MODELING_VERSION, build_baseline, build_model, xgb_params
from leanops.results import Batch, FeatureSet, TrainResult, combine_fingerprints
from leanops.settings import Settings, get_settings
from leanops.spec import Spec

LABELLED = "__leanops_labelled"  # whether a row's target is usable (on_missing), decided per row when read


@dataclass(frozen=True)
class ClusterTraining:
    """The single-machine path's three results, from a cluster: ``batch`` names the window (its rows stay
    on the cluster: ``batch.frame`` is empty), ``features`` holds a sample of the fit rows with the real
    row counts (``FeatureSet.row_counts``) and the whole holdout, ``train`` the self-contained pipeline."""

    batch: Batch
    features: FeatureSet
    train: TrainResult
    warnings: tuple[str, ...] = ()
    workers: int = 0


@contextmanager
def cluster_client(settings: Settings | None = None) -> Iterator[Any]:
    """A client of the cluster at ``LEANOPS_DASK_SCHEDULER_ADDRESS``, or of a LocalCluster started for
    the block (``dask_workers`` worker processes, each capped at ``dask_worker_memory_limit``)."""
    from distributed import Client, LocalCluster

    settings = settings or get_settings()
    address = settings.dask_scheduler_address
    if address:
        try:
            client = Client(address, timeout=settings.dask_connect_timeout_seconds)
        except (OSError, TimeoutError) as error:
            raise ClusterUnavailable(f"no Dask scheduler answered at {address} (LEANOPS_DASK_SCHEDULER_ADDRESS): {error}") from error
        with client:
            yield client
        return
    # Processes, not threads: a memory limit is per worker process, and the XGBoost workers must not share one.
    with LocalCluster(
        n_workers=settings.dask_workers, threads_per_worker=settings.dask_threads_per_worker,
        memory_limit=settings.dask_worker_memory_limit, processes=True, dashboard_address=None,
    ) as cluster, Client(cluster) as client:
        yield client


def _compact(frame: pd.DataFrame, spec: Spec) -> pd.DataFrame:
    """One object's rows as a partition: labelled, text as categories (a fraction of the memory of Python
    strings), the time column parsed; the target's source replaced by the target."""
    target, keep, _ = make_target(frame, spec)
    out = frame.drop(columns=[spec.target.source])
    if spec.time is not None and spec.time.column in out:
        out[spec.time.column] = pd.to_datetime(out[spec.time.column], utc=True, format="ISO8601", errors="coerce")
    numeric = set(spec.numeric_features)
    for column in out.columns:
        if out[column].dtype == object and column not in numeric:
            out[column] = out[column].astype("category")
    return out.assign(**{spec.target.name: target.to_numpy(), LABELLED: keep.to_numpy()})


def _per_object_contract(spec: Spec) -> Spec:
    """The contract's rules that hold row by row; the shares and the row count are the window's
    (:func:`_window_share_problems`), as the single-machine path checks them on the whole window."""
    rules = spec.contract
    columns = {name: rule.model_copy(update={"max_null_share": 1.0}) for name, rule in rules.columns.items()}
    relaxed = rules.model_copy(update={"min_rows": 0, "max_duplicate_share": 1.0, "columns": columns})
    return spec.model_copy(update={"contract": relaxed})


def _window_share_problems(facts: list[dict[str, Any]], spec: Spec) -> list[str]:
    """Null shares, duplicate share and row count over every object (duplicates counted within objects)."""
    rows = sum(f["rows"] for f in facts)
    problems = []
    if rows < spec.contract.min_rows:
        problems.append(f"batch has {rows} rows; the contract requires at least {spec.contract.min_rows}")
    for name, rule in spec.contract.columns.items():
        nulls = sum(f["nulls"].get(name, 0) for f in facts)
        share = nulls / rows if rows else 0.0
        if rows and share == 1.0:
            problems.append(f"column {name!r} is entirely null")
        elif share > rule.max_null_share:
            problems.append(f"column {name!r} has {share:.1%} nulls; at most {rule.max_null_share:.1%} allowed")
    duplicated = sum(f["duplicated"] for f in facts)
    if rows and duplicated / rows > spec.contract.max_duplicate_share:
        problems.append(f"{duplicated} duplicated rows ({duplicated / rows:.2%}); at most {spec.contract.max_duplicate_share:.2%} allowed")
    return problems


def _read_partition(uri: str, spec: Spec, settings: Settings) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Runs on a worker: read one object, check its contract's row-by-row rules, compact it."""
    frame, fingerprint, identity = storage.read_table_with_identity(uri, settings)
    violations, warnings = contract.check_batch(frame, _per_object_contract(spec))
    # A column null throughout one object (a month with no weather) may still be filled in the window, and
    # the classes one object holds say nothing of the window's (checked on the split, class_count_problems).
    window_wide = set(contract.class_problems(frame, spec)) if spec.target.source in frame else set()
    violations = [v for v in violations if not v.endswith("is entirely null") and v not in window_wide]
    facts = {"uri": uri, "fingerprint": fingerprint, "identity": identity, "columns": sorted(frame.columns),
             "rows": len(frame), "duplicated": int(frame.duplicated().sum()),
             "nulls": {name: int(frame[name].isna().sum()) for name in spec.contract.columns if name in frame},
             "violations": [f"{uri}: {v}" for v in violations], "warnings": [f"{uri}: {w}" for w in warnings]}
    if violations:
        return frame.iloc[:0], facts
    return _compact(frame, spec), facts


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _window_rows(ddf, spec: Spec, uri: str):
    """The rows of the spec's retrain window (``batches.read_batch``'s rules) and their bounds text."""
    window, column = spec.retrain_window, spec.time.column if spec.time else None
    if not (column and (window.days or window.since)):
        return ddf, ""
    times = ddf[column]
    keep = ~times.isna()
    if window.since:
        keep &= times >= pd.Timestamp(_utc(datetime.fromisoformat(window.since)))
    if window.days:
        newest = times[keep].max().compute()
        if pd.notna(newest):
            recent = keep & (times > newest - timedelta(days=window.days))
            if int(recent.sum().compute()) < window.min_rows:
                floor = times[keep].nlargest(window.min_rows).min().compute()
                recent = keep & (times >= floor)
            keep = recent
    import dask

    kept = ddf[keep]
    oldest, newest = dask.compute(kept[column].min(), kept[column].max())
    return kept, (f"{oldest.isoformat()}..{newest.isoformat()}" if pd.notna(oldest) else "")


HISTOGRAM_BINS = 4096
GATHER_AT_MOST = 100_000


def _nth_largest_time(times, n: int) -> pd.Timestamp:
    """The ``n``-th largest of a Dask series of UTC timestamps (NaT left out), exactly as
    ``times.nlargest(n).min()`` but holding a few thousand numbers per task: Dask's ``nlargest(n)``
    concatenates n values per partition group into single tasks, and with n = the holdout's 1.3M rows
    those tasks killed 1.5 GB workers four times in a row (bench_dask_training at 2.6 GB). Histograms
    narrow the range until one bin holds the answer, then that bin's values are gathered."""
    import dask

    # Held in the workers' memory (8 bytes a row) for the passes below, instead of reading and filtering
    # the partitions again on every pass.
    parts = dask.persist(*[dask.delayed(_as_int64_ns)(p) for p in times.to_delayed()])
    ranges = [r for r in dask.compute(*[dask.delayed(_int_range)(p) for p in parts]) if r is not None]
    if not ranges:
        raise ContractViolation("", ["no row has a time to order the holdout by"])
    low, high = min(r[0] for r in ranges), max(r[1] for r in ranges)
    while True:
        width = -(-(high - low + 1) // HISTOGRAM_BINS)  # ceil: bins of whole nanoseconds cover [low, high]
        counts = sum(dask.compute(*[dask.delayed(_histogram)(p, low, high, width) for p in parts]))
        above = np.cumsum(counts[::-1])  # rows at or above each bin, from the top bin down
        top = int(np.searchsorted(above, n))  # bins from the top until n rows are covered
        if top >= len(counts):
            raise ValueError(f"asked for the {n}-th largest of {int(above[-1])} times")
        index = len(counts) - 1 - top
        n -= int(above[top - 1]) if top else 0
        low, high = low + index * width, min(high, low + (index + 1) * width - 1)
        if width == 1 or counts[index] <= GATHER_AT_MOST:
            inside = np.concatenate(dask.compute(*[dask.delayed(_between)(p, low, high) for p in parts]))
            return pd.Timestamp(int(np.sort(inside)[::-1][n - 1]), unit="ns", tz="UTC")


def _as_int64_ns(series: pd.Series) -> np.ndarray:
    return series.dropna().to_numpy(dtype="datetime64[ns]").astype(np.int64)


def _int_range(values: np.ndarray) -> tuple[int, int] | None:
    return (int(values.min()), int(values.max())) if len(values) else None


def _histogram(values: np.ndarray, low: int, high: int, width: int) -> np.ndarray:
    inside = values[(values >= low) & (values <= high)]
    return np.bincount((inside - low) // width, minlength=HISTOGRAM_BINS)[:HISTOGRAM_BINS]


def _between(values: np.ndarray, low: int, high: int) -> np.ndarray:
    return values[(values >= low) & (values <= high)]


def _distinct_categories(part: pd.DataFrame, spec: Spec) -> dict[str, set[str]]:
    """The encoder inputs' distinct values (after the feature step's casts) of one partition."""
    values = feature_frame(part, spec)
    return {name: set(values[name].dropna().unique()) for name in spec.categorical_features}


def _fitted_model_skeleton(spec: Spec, params: dict[str, Any] | None, categories: dict[str, list[str]], sample: pd.DataFrame):
    """``modeling.build_model``'s pipeline with its feature step fitted: encoders given every category
    of the fit rows (sorted, as OrdinalEncoder's own fit would order them)."""
    from sklearn.base import clone

    model = build_model(spec, params)
    step = model.named_steps["features"]
    features_by_group = {name: features for name, features, _ in feature_groups(spec)}
    for name, group, _ in step.transformers:
        features = features_by_group[name]
        if features[0].kind == "categorical":
            # spec_columns gives every group the same encoder object: each needs its own categories.
            encoder = clone(group.steps[-1][1]).set_params(categories=[categories[f.name] for f in features])
            group.steps[-1] = (group.steps[-1][0], encoder)
    step.fit(sample[model_input_columns(spec)])
    return model


def _as_loaded(frame: pd.DataFrame) -> pd.DataFrame:
    """Categories back to plain object columns, as a batch read by the single-machine path has them."""
    out = frame.copy()
    for column in out.columns:
        if isinstance(out[column].dtype, pd.CategoricalDtype):
            out[column] = out[column].astype(object).where(out[column].notna(), None)
    return out.drop(columns=[LABELLED], errors="ignore").reset_index(drop=True)


def train_on_cluster(uri: str, spec: Spec, params: dict[str, Any] | None = None, client=None,
                     is_rejected: batches.RejectedTest = batches._never_rejected, settings: Settings | None = None) -> ClusterTraining:
    """Read the window at ``uri`` (an object, or a prefix: ``batches.read_batch``'s rules, leaving out what
    ``is_rejected``) on the cluster of ``client`` (default: :func:`cluster_client`'s) and train."""
    settings = settings or get_settings()
    if client is None:
        with cluster_client(settings) as own:
            return train_on_cluster(uri, spec, params, own, is_rejected, settings)
    import dask
    import dask.dataframe as dd
    from xgboost import dask as dxgb

    if batches.is_prefix(uri):
        if (spec.retrain_window.days or spec.retrain_window.since) and not spec.time:
            raise BatchReadError("retrain_window.days / since need the spec's time.column to date rows; the spec has none")
        objects = [o.uri for o in batches._window_objects(uri, spec.retrain_window, is_rejected, settings)]
    else:
        objects = [uri]

    read = [client.submit(_read_partition, o, spec, settings, key=f"read-{o}-{spec.spec_hash}", pure=False) for o in objects]
    facts = client.gather([client.submit(operator.itemgetter(1), r) for r in read])
    violations = [v for f in facts for v in f["violations"]] + _window_share_problems(facts, spec)
    if violations:
        raise ContractViolation(uri, violations)
    columns = [set(f["columns"]) for f in facts]
    if any(c != columns[0] for c in columns):
        raise BatchReadError(f"batches under {uri} disagree on their columns: {sorted(set.union(*columns) - set.intersection(*columns))}")
    parts = [client.submit(operator.itemgetter(0), r) for r in read]
    del read  # the partitions alone stay on the workers
    ddf = dd.from_delayed(parts, meta=client.submit(lambda p: p.iloc[:0], parts[0]).result(), verify_meta=False)

    ddf, bounds = _window_rows(ddf, spec, uri)
    rows_per_part = ddf.map_partitions(len).compute().tolist()
    window_rows = sum(rows_per_part)
    if batches.is_prefix(uri) and window_rows < spec.retrain_window.min_rows:
        raise BatchReadError(f"the retrain window under {uri} holds {window_rows} rows, fewer than retrain_window.min_rows = {spec.retrain_window.min_rows}")
    used = [i for i, n in enumerate(rows_per_part) if n]
    fingerprint = combine_fingerprints(*(facts[i]["fingerprint"] for i in used), *([bounds] if bounds else []))
    if not batches.is_prefix(uri):
        fingerprint = facts[0]["fingerprint"]
    identity = (batches._object_identity(uri, facts[0]["identity"]) if not batches.is_prefix(uri)
                else batches._window_identity(uri, [(f["uri"], f["identity"]) for f in facts]))
    batch = Batch(uri=uri, fingerprint=fingerprint, frame=pd.DataFrame(), sources=tuple(objects[i] for i in used), identity=identity)

    labelled = ddf[ddf[LABELLED]]
    n = int(labelled.map_partitions(len).sum().compute())
    excluded = window_rows - n
    if n < 3:
        raise ContractViolation(uri, [f"{n} labelled rows of target {spec.target.name!r}: too few to train and hold out"])
    n_holdout = max(1, int(round(n * spec.split.holdout_fraction)))
    if spec.time is not None:
        column = spec.time.column
        cutoff = _nth_largest_time(labelled[column], n_holdout)
        fit, holdout = labelled[labelled[column] < cutoff], labelled[labelled[column] >= cutoff]
    else:
        fit, holdout = labelled.random_split([1 - n_holdout / n, n_holdout / n], random_state=spec.split.seed)
    holdout_rows = holdout.compute()
    if spec.time is not None:
        holdout_rows = holdout_rows.sort_values(spec.time.column, kind="stable")
    # Per partition and summed here: dask's value_counts would shuffle for a handful of classes.
    counted = dask.compute(*[dask.delayed(lambda p: p[spec.target.name].value_counts())(p) for p in fit.to_delayed()])
    fit_counts = pd.concat(counted).groupby(level=0).sum() if spec.is_classifier else pd.Series(dtype="int64")
    n_fit = int(fit.map_partitions(len).sum().compute())
    y_holdout = holdout_rows[spec.target.name].reset_index(drop=True)
    problems = class_count_problems(fit_counts, n_fit, y_holdout, spec)
    if n_fit < 2:
        problems.append(f"{n_fit} rows before the holdout's cutoff: too few to train on")
    if problems:
        raise ContractViolation(uri, problems)
    n_valid = max(1, int(round(n_fit * spec.split.validation_fraction)))

    distinct = dask.compute(*[dask.delayed(_distinct_categories)(p, spec) for p in fit.to_delayed()])
    categories = {name: sorted(set().union(*(d[name] for d in distinct))) for name in spec.categorical_features}
    fraction = min(1.0, settings.dask_sample_rows / n_fit)
    sample = fit.sample(frac=fraction, random_state=spec.split.seed).compute() if fraction < 1 else fit.compute()
    if spec.time is not None:
        sample = sample.sort_values(spec.time.column, kind="stable")
    y_sample = sample[spec.target.name].reset_index(drop=True)
    X_sample = _as_loaded(sample.drop(columns=[spec.target.name]))

    model = _fitted_model_skeleton(spec, params, categories, X_sample)
    feature_step, inputs = model.named_steps["features"], model_input_columns(spec)
    names = [f"f{i}" for i in range(len(spec.features))]

    def transform(part: pd.DataFrame) -> pd.DataFrame:
        if part.empty:  # an object wholly in the holdout (scikit-learn refuses zero rows)
            return pd.DataFrame({c: pd.Series(dtype=np.float32) for c in names}, index=part.index)
        return pd.DataFrame(feature_step.transform(part[inputs]).astype(np.float32), columns=names, index=part.index)

    X = fit.map_partitions(transform, meta=pd.DataFrame({c: pd.Series(dtype=np.float32) for c in names}))
    y = fit[spec.target.name]
    final_params = xgb_params(spec, params)
    estimator_cls = dxgb.DaskXGBClassifier if spec.is_classifier else dxgb.DaskXGBRegressor
    distributed_model = estimator_cls(**final_params)
    distributed_model.client = client
    started = time.perf_counter()
    distributed_model.fit(X, y)
    fit_seconds = time.perf_counter() - started
    booster = distributed_model.get_booster()
    booster.feature_names = None  # the served pipeline hands XGBoost an unnamed array, as the single-machine one does
    estimator = model.named_steps["model"]
    estimator.load_model(bytearray(booster.save_raw("json")))
    del fit, X, y
    baseline = build_baseline(spec).fit(X_sample, y_sample)

    ordered = [feature.name for feature in feature_order(spec)]  # one encoded column per feature, in this order
    importance = {n: float(v) for n, v in sorted(zip(ordered, estimator.feature_importances_), key=lambda kv: -kv[1])}
    n_train_sample = len(X_sample) - max(1, int(round(len(X_sample) * spec.split.validation_fraction)))
    features = FeatureSet(
        fingerprint=combine_fingerprints(batch.fingerprint, spec.spec_hash, FEATURES_VERSION),
        X_train=X_sample.iloc[:n_train_sample][inputs], y_train=y_sample.iloc[:n_train_sample],
        X_valid=X_sample.iloc[n_train_sample:][inputs], y_valid=y_sample.iloc[n_train_sample:],
        X_holdout=_as_loaded(holdout_rows.drop(columns=[spec.target.name])),
        y_holdout=y_holdout,
        rows_excluded={"missing_target": excluded} if excluded else {},
        split_description=(
            f"on Dask ({len(objects)} partitions): "
            + (f"time-ordered by {spec.time.column}: " if spec.time else f"shuffled (seed {spec.split.seed}): ")
            + f"train {n_fit - n_valid}, validation {n_valid}, holdout (most recent) {len(y_holdout)}"
            + (f"; holdout from {cutoff.isoformat()}" if spec.time is not None else "")
            + f"; features fitted on every fit row's categories; baseline on a sample of {len(X_sample)}"
        ),
        row_counts={"train": n_fit - n_valid, "valid": n_valid, "holdout": len(y_holdout)},
    )
    train = TrainResult(
        fingerprint=combine_fingerprints(features.fingerprint, sorted(final_params.items()), MODELING_VERSION, "dask"),
        model=model, baseline=baseline, params=final_params, feature_importance=importance, fit_seconds=fit_seconds,
    )
    workers = len(client.scheduler_info().get("workers", {}))
    return ClusterTraining(batch, features, train, tuple(w for f in facts for w in f["warnings"]), workers)


