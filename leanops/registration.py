"""Registering a training: one tracking run (params, metrics, lineage, spec, model, reference sample,
holdout) and one registered version pointing at its model, under an alias.

Registration is all-or-nothing: a failure after the version exists deletes the version, marks the run
failed and moves no alias. Registration is idempotent: a training key (data fingerprint, spec, params,
code) already registered returns the existing version instead of creating another.

It converges when the undo cannot run (the process was killed, or MLflow died mid-way): a version is
created "pending" (``registry.REGISTRATION_TAG``) and marked "complete" only once its alias is set, so
an interrupted registration leaves at most a pending version. Promotion and rollback never take one
(``registry.require_complete``), and the next registration of the same training key removes it (its
aliases go with it) before registering again. Callers serialise registrations of one model
(tasks/register.py holds the model's "registration" lock), so a pending version seen here is abandoned.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

import pandas as pd

from leanops import registry, tracking
from leanops.errors import RegistrationFailed, RegistryUnavailable
from leanops.features import model_input_columns
from leanops.mlflow_access import run_url
from leanops.modeling import pyfunc_output
from leanops.results import EvalResult, FeatureSet, Lineage, RegistrationResult, TrainResult, retrain_key_tag
from leanops.settings import Settings
from leanops.spec import Spec

log = logging.getLogger(__name__)


def reference_sample(features: FeatureSet, spec: Spec) -> pd.DataFrame:
    """A seeded sample of the training data (raw model inputs + target): the drift monitor's reference."""
    X = pd.concat([features.X_train, features.X_valid])
    y = pd.concat([features.y_train, features.y_valid])
    frame = X.assign(**{spec.target.name: y.to_numpy()})
    n = min(len(frame), spec.drift.reference_sample_rows)
    return frame.sample(n=n, random_state=spec.split.seed).sort_index().reset_index(drop=True)


def _example_frame(X: pd.DataFrame, spec: Spec) -> pd.DataFrame:
    # MLflow signatures reject tz-aware datetimes; a served model takes ISO strings (as JSON carries them).
    example = X.head(5).copy()
    # Integer columns in a signature cannot take a missing value later; numeric inputs are doubles.
    for column in spec.numeric_features:
        if column in example:
            example[column] = example[column].astype("float64")
    if spec.time is not None and spec.time.column in example:
        example[spec.time.column] = pd.to_datetime(example[spec.time.column], utc=True).map(lambda t: t.isoformat())
    return example


def _write_parquet(frame: pd.DataFrame, folder: Path, artifact: str) -> Path:
    path = folder / artifact
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)
    return path


def _log_training(run_id: str, spec: Spec, train: TrainResult, evaluation: EvalResult, features: FeatureSet,
                  settings: Settings | None) -> tracking.LoggedModel:
    """Everything the training run holds; returns the logged model."""
    tracking.log_params(run_id, {k: v for k, v in train.params.items() if v is not None}, settings=settings)
    metrics = {
        **evaluation.model,
        **{f"baseline_{k}": v for k, v in evaluation.baseline.items()},
        **{f"rows_{k}": float(v) for k, v in features.sizes.items()},
        **{f"rows_excluded_{k}": float(v) for k, v in features.rows_excluded.items()},
        "fit_seconds": train.fit_seconds,
    }
    tracking.log_metrics(run_id, [(k, v, 0) for k, v in metrics.items()], settings=settings)
    tracking.log_dict(run_id, {"split": features.split_description, "spec": spec.model_dump(mode="json")},
                      registry.SPEC_ARTIFACT, settings=settings)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / registry.IMPORTANCE_ARTIFACT).parent.mkdir(parents=True, exist_ok=True)
        (folder / registry.IMPORTANCE_ARTIFACT).write_text(json.dumps(train.feature_importance, indent=1))
        holdout = features.X_holdout.assign(**{spec.target.name: features.y_holdout.to_numpy()})
        _write_parquet(reference_sample(features, spec), folder, registry.REFERENCE_ARTIFACT)
        _write_parquet(holdout, folder, registry.HOLDOUT_ARTIFACT)
        tracking.log_folder(run_id, folder, settings=settings)

    example = _example_frame(features.X_train[model_input_columns(spec)], spec)
    head = features.X_train.head(5)
    scores = train.model.predict_proba(head) if spec.is_classifier else train.model.predict(head)
    predict_fn = "predict_proba" if spec.is_classifier else "predict"
    return tracking.log_sklearn_model(run_id, train.model, example, scores, predict_fn, pyfunc_output(spec), settings=settings)


def find_earlier_retrain(spec: Spec, retrain_key: str, settings: Settings | None = None) -> RegistrationResult | None:
    """The version a retrain with ``retrain_key`` (leanops.lineage.retrain_key) already registered, complete,
    as an uncreated registration; None when there is none. One registry search, nothing read from the data."""
    existing = registry.find_by_retrain_key(spec.registered_model_name, retrain_key, settings)
    if existing is None:
        return None
    rows = existing.metrics.get("rows_train")
    return RegistrationResult(
        existing.name, existing.version, existing.run_id, existing.model_uri, False, run_url(existing.run_id, settings=settings),
        train_rows=int(rows) if rows is not None else None,
    )


def register_training(
    spec: Spec,
    train: TrainResult,
    evaluation: EvalResult,
    features: FeatureSet,
    lineage: Lineage,
    training_key: str,
    alias: str = registry.CHALLENGER,
    settings: Settings | None = None,
) -> RegistrationResult:
    """Log one run (params, metrics, lineage, model, reference sample, holdout) and register a version."""
    name = spec.registered_model_name
    earlier = registry.versions_by_training_key(name, training_key, settings)
    for unfinished in (info for info in earlier if not info.registration_complete):
        _remove_unfinished(unfinished, settings)
    existing = next((info for info in earlier if info.registration_complete), None)
    if existing is not None:
        log.info("training key %s already registered as %s v%s: nothing new registered", training_key, name, existing.version)
        if lineage.retrain_key and retrain_key_tag(lineage.retrain_key) not in existing.tags:
            # The same content reached under another identity (re-uploaded, copied): a rerun of it finds this version unread.
            registry.set_version_tags(name, existing.version, {retrain_key_tag(lineage.retrain_key): lineage.data_identity}, settings)
        return RegistrationResult(name, existing.version, existing.run_id, existing.model_uri, False, run_url(existing.run_id, settings=settings), alias)

    run = tracking.start_run(f"leanops/{name}", f"retrain-{training_key[:8]}", {
        **lineage.as_tags(), registry.TRAINING_KEY_TAG: training_key, "leanops.model": name,
        "mlflow.source.git.commit": lineage.git_commit,
    }, settings=settings)
    version = None
    try:
        logged = _log_training(run.run_id, spec, train, evaluation, features, settings)
        registry.ensure_registered_model(name, spec.description, settings=settings)
        version_tags = {
            **lineage.as_tags(),
            registry.TRAINING_KEY_TAG: training_key,
            registry.REGISTRATION_TAG: registry.PENDING,
            "leanops.primary_metric": spec.metric.primary,
            f"leanops.metric.{spec.metric.primary}": f"{evaluation.model[spec.metric.primary]:.6f}",
        }
        version = registry.create_version(name, logged.model_uri, run.run_id, version_tags, logged.model_id, run.url, settings=settings)
        registry.set_alias(name, alias, version, settings)
        registry.set_version_tags(name, version, {registry.REGISTRATION_TAG: registry.COMPLETE}, settings)
        tracking.end_run(run.run_id, settings=settings)
    except Exception as exc:
        _undo_registration(name, version, run.run_id, settings)
        if isinstance(exc, RegistryUnavailable):
            raise RegistryUnavailable(f"registering {name}; nothing was registered: {exc}") from exc
        raise RegistrationFailed(f"registering {name} failed ({type(exc).__name__}: {exc}); nothing was registered") from exc
    return RegistrationResult(name, version, run.run_id, f"models:/{name}/{version}", True, run.url, alias)


def _remove_unfinished(info: registry.ModelVersionInfo, settings: Settings | None) -> None:
    """Delete a version an interrupted registration left pending (MLflow drops its aliases with it)."""
    log.warning("removing %s v%s: its registration (run %s) did not finish", info.name, info.version, info.run_id)
    registry.delete_version(info.name, info.version, settings=settings)
    if info.run_id:
        try:
            tracking.end_run(info.run_id, failed=True, settings=settings)
        except RegistryUnavailable:
            raise
        except Exception:  # noqa: BLE001 - the run may be gone (deleted by hand): the version was what mattered
            log.exception("could not mark run %s failed", info.run_id)


def _undo_registration(name: str, version: str | None, run_id: str, settings: Settings | None) -> None:
    if version is not None:
        try:
            registry.delete_version(name, version, settings=settings)
        except Exception:  # noqa: BLE001 - best effort; the original error is what the user needs
            log.exception("could not delete half-registered version %s v%s", name, version)
    try:
        tracking.end_run(run_id, failed=True, settings=settings)
    except Exception:  # noqa: BLE001 - best effort; the original error is what the user needs
        log.exception("could not mark run %s failed", run_id)
