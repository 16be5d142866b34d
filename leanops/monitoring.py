"""The drift-monitor stage logic: which model a landed batch belongs to, and how far it has moved
from the champion's training reference (features, predictions and, with labels, performance)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from leanops import drift
from leanops.errors import BatchReadError
from leanops.features import feature_frame, make_target, model_input_columns
from leanops.modeling import per_class_recall, predict_scores, score
from leanops.results import DriftResult
from leanops.settings import Settings, get_settings
from leanops.spec import Spec


@dataclass(frozen=True)
class MonitoringTarget:
    spec: str
    batch_uri: str


def resolve_target(spec: str, batch_uri: str, bucket: str, key: str, incoming_prefix: str, version_id: str = "") -> MonitoringTarget:
    """The batch to check and its model. A key ``<incoming_prefix><model>/<file>`` (given, or in ``batch_uri``) names the model;
    a version id pins the object version that was announced (versioned buckets)."""
    uri = batch_uri or (f"s3://{bucket}/{key}" if bucket and key else "")
    if version_id and uri.startswith("s3://") and "?versionId=" not in uri:
        uri = f"{uri}?versionId={version_id}"
    if not uri:
        raise BatchReadError("no batch to check: pass batch_uri, or bucket and key")
    if spec:
        return MonitoringTarget(spec, uri)
    model = model_from_key(key or _key_of(uri), incoming_prefix)
    if model is None:
        raise BatchReadError(
            f"cannot tell which model {uri} belongs to: expected a key like {incoming_prefix}<model>/<file>, or pass spec"
        )
    return MonitoringTarget(model, uri)


def _key_of(uri: str) -> str:
    """The object key of an ``s3://bucket/key[?versionId=...]`` URI ("" for a local path)."""
    if not uri.startswith("s3://"):
        return ""
    return uri[len("s3://"):].partition("/")[2].split("?versionId=", 1)[0]


def model_from_key(key: str, incoming_prefix: str) -> str | None:
    """``<incoming_prefix><model>/<file>`` -> the model; None for any other key."""
    relative = key[len(incoming_prefix):] if key.startswith(incoming_prefix) else ""
    model = relative.split("/", 1)[0] if "/" in relative else ""
    return model or None


def history_uri(model: str, settings: Settings | None = None) -> str:
    settings = settings or get_settings()
    return f"{settings.resolved_monitoring_root.rstrip('/')}/{model}/drift-history.parquet"


def sample_rows(frame: pd.DataFrame, cap: int, seed: int) -> pd.DataFrame:
    """At most ``cap`` rows, reproducibly: scoring a million rows to estimate a distribution is waste."""
    return frame if len(frame) <= cap else frame.sample(n=cap, random_state=seed).sort_index()


@dataclass(frozen=True)
class Assessment:
    result: DriftResult
    reference_features: pd.DataFrame
    current_features: pd.DataFrame
    reference_scores: np.ndarray
    current_scores: np.ndarray


def assess_batch(
    batch: pd.DataFrame,
    reference: pd.DataFrame,
    champion_model: Any,
    champion_metrics: dict[str, float],
    feature_importance: dict[str, float] | None,
    spec: Spec,
    *,
    holdout: pd.DataFrame,
) -> Assessment:
    """Feature drift and prediction drift of a batch against the reference; a performance check when it has labels.

    ``reference`` (the champion's training sample) is what the features are compared with; the
    champion's predictions are compared with its predictions on ``holdout``, rows it did not train on:
    on its own training rows a model is more confident than on any new batch, which reads as drift.
    """
    current = sample_rows(batch, spec.drift.sample_cap, spec.drift.seed)
    inputs = model_input_columns(spec)
    reference_features = feature_frame(reference[inputs], spec)
    current_features = feature_frame(current[inputs], spec)
    scoring_rows = sample_rows(holdout, spec.drift.sample_cap, spec.drift.seed)
    reference_scores = predict_scores(champion_model, scoring_rows[inputs], spec)
    current_scores = predict_scores(champion_model, current[inputs], spec)
    result = drift.compute_drift(
        reference_features, current_features, spec,
        reference_scores=reference_scores, current_scores=current_scores,
        feature_importance=feature_importance if spec.drift.weight_by_importance else None,
    )
    result = replace(result, n_current=len(batch))
    primary = spec.metric.primary
    if spec.target.source in current and primary in champion_metrics and result.status != "inconclusive":
        target, keep, _ = make_target(current, spec)
        labelled = keep.to_numpy()
        if labelled.sum() >= spec.drift.min_rows and target[labelled].nunique() > 1:
            value = score(target[labelled], current_scores[labelled], spec)[primary]
            recall = per_class_recall(target[labelled], current_scores[labelled], spec)
            result = result.with_performance(drift.check_performance(
                primary, value, champion_metrics[primary], spec, n_rows=int(labelled.sum()), per_class_recall=recall,
            ))
    return Assessment(result, reference_features, current_features, reference_scores, current_scores)


def as_trained(current: Spec, trained_with: Spec) -> Spec:
    """The spec a champion is checked with: the features, target and metrics it was trained with (the spec
    file may have changed since, e.g. a feature added), under today's drift policy (thresholds, persistence)."""
    return trained_with.model_copy(update={"drift": current.drift, "name": current.name})
