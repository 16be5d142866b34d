"""The drift-monitor stage logic: which model a landed batch belongs to, and how far it has moved
from the champion's training reference (features, predictions and, with labels, performance)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from leanops import drift, drift_log, registry
from leanops.errors import BatchReadError, DriftReportError
from leanops.features import feature_frame, make_target, model_input_columns
from leanops.modeling import per_class_recall, predict_scores, score
from leanops.registry import ModelVersionInfo
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


@dataclass(frozen=True)
class ChampionData:
    """What a drift check reads of the champion, loaded once per check and kept in memory for the check
    and its report (never persisted: the frames and the model are the champion's own artifacts)."""

    info: ModelVersionInfo
    spec: Spec
    """The spec it is checked with: as it was trained, under today's drift policy (:func:`as_trained`)."""
    model: Any
    reference: pd.DataFrame
    holdout: pd.DataFrame
    importance: dict[str, float] | None

    @property
    def fingerprint(self) -> str:
        # Cache keys count the champion by its version and the spec it is checked with, never by its frames.
        return f"{self.info.fingerprint}:{self.info.run_id}:{self.spec.spec_hash}"


def load_champion_data(champion: ModelVersionInfo, spec: Spec, settings: Settings | None = None) -> ChampionData:
    """The champion's recorded spec, model, training reference, holdout and (when the drift policy weighs
    by it) feature importance, from its registration run."""
    checked_with = as_trained(spec, registry.load_recorded_spec(champion, settings))
    importance = registry.load_feature_importance(champion, settings) if checked_with.drift.weight_by_importance else None
    return ChampionData(
        info=champion, spec=checked_with, model=registry.load_model(champion, settings),
        reference=registry.load_reference_sample(champion, settings), holdout=registry.load_holdout(champion, settings),
        importance=importance,
    )


def check_batch(batch: pd.DataFrame, champion: ChampionData) -> DriftResult:
    """The verdict on a batch: :func:`assess_batch` against the champion's reference and holdout."""
    return assess_batch(
        batch, champion.reference, champion.model, champion.info.metrics, champion.importance, champion.spec,
        holdout=champion.holdout,
    ).result


@dataclass(frozen=True)
class ReportInputs:
    reference_features: pd.DataFrame
    current_features: pd.DataFrame
    reference_scores: np.ndarray
    current_scores: np.ndarray


def report_inputs(batch: pd.DataFrame, champion: ChampionData, rows: int) -> ReportInputs:
    """Feature frames and the champion's scores for the report, on a seeded sample of at most ``rows`` rows
    of the batch, the reference and the holdout: the report's cost follows ``rows``, not the batch."""
    spec = champion.spec
    inputs = model_input_columns(spec)
    current = sample_rows(batch, rows, spec.drift.seed)
    reference = sample_rows(champion.reference, rows, spec.drift.seed)
    holdout = sample_rows(champion.holdout, rows, spec.drift.seed)
    return ReportInputs(
        reference_features=feature_frame(reference[inputs], spec),
        current_features=feature_frame(current[inputs], spec),
        reference_scores=predict_scores(champion.model, holdout[inputs], spec),
        current_scores=predict_scores(champion.model, current[inputs], spec),
    )


def attach_report(batch: pd.DataFrame, batch_uri: str, champion: ChampionData, result: DriftResult, rows: int,
                  settings: Settings | None = None) -> None:
    """Build the Evidently report of a conclusive check on at most ``rows`` rows a side and attach it to the
    check's MLflow run (opened with its verdict, ``result.report_json_uri``), which then finishes.

    Runs after the verdict was recorded and announced. A failure marks the run FAILED with its reason and
    raises DriftReportError, transient when its cause is: the verdict stands, the missing report is reported."""
    if not result.report_json_uri:
        raise DriftReportError(f"the drift check of {batch_uri} has no run to attach a report to (status {result.status})")
    run_id = drift_log.run_id_of(result.report_json_uri)
    try:
        data = report_inputs(batch, champion, rows)
        report = drift.build_evidently_report(
            data.reference_features, data.current_features, champion.spec,
            reference_scores=data.reference_scores, current_scores=data.current_scores, sample_rows=rows,
        )
        drift_log.attach_report(run_id, report.html, report.json_text(), len(data.reference_features),
                                len(data.current_features), settings)
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        try:
            drift_log.mark_report_failed(run_id, reason, settings)
        except Exception as marking:  # noqa: BLE001 - MLflow may be what failed; the report's failure is raised below
            exc.add_note(f"the drift run {run_id} could not be marked failed either: {type(marking).__name__}: {marking}")
        raise DriftReportError(
            f"the drift report of {batch_uri} against champion v{champion.info.version} was not attached ({reason[:300]}); "
            f"the verdict ({result.status}) was recorded and announced before and stands, its scores are in MLflow run "
            f"{run_id}; run the check again to attach the report"
        ) from exc


def as_trained(current: Spec, trained_with: Spec) -> Spec:
    """The spec a champion is checked with: the features, target and metrics it was trained with (the spec
    file may have changed since, e.g. a feature added), under today's drift policy (thresholds, persistence)."""
    return trained_with.model_copy(update={"drift": current.drift, "name": current.name})
