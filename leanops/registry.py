"""The model registry and experiment tracking: the only MLflow user.

Registration is all-or-nothing: a failure after the version exists deletes the version, marks the
run failed and moves no alias. Registration is idempotent: a training key (data fingerprint, spec,
params, code) already registered returns the existing version instead of creating another.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from leanops.errors import ModelNotFound, NoChampion, RegistrationFailed
from leanops.features import model_input_columns
from leanops.results import EvalResult, FeatureSet, Lineage, RegistrationResult, TrainResult
from leanops.settings import Settings, get_settings
from leanops.spec import Spec

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS_CHAMPION = "previous-champion"
TRAINING_KEY_TAG = "leanops.training_key"
REFERENCE_ARTIFACT = "reference/reference.parquet"
HOLDOUT_ARTIFACT = "evaluation/holdout.parquet"
IMPORTANCE_ARTIFACT = "evaluation/feature_importance.json"
# skops refuses unknown types on load; these are the ones our pipelines contain beyond scikit-learn's.
SKOPS_TRUSTED_TYPES = [
    "xgboost.sklearn.XGBClassifier",
    "xgboost.sklearn.XGBRegressor",
    "xgboost.core.Booster",
    "leanops.features.SpecFeatures",
]


@dataclass(frozen=True)
class ModelVersionInfo:
    name: str
    version: str
    run_id: str
    model_uri: str
    source: str
    aliases: tuple[str, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    creation_timestamp: int = 0

    @property
    def fingerprint(self) -> str:
        return f"{self.name}:v{self.version}"


def _tracking_uri(settings: Settings | None = None) -> str:
    return (settings or get_settings()).resolved_mlflow_tracking_uri


def client(settings: Settings | None = None):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=_tracking_uri(settings), registry_uri=_tracking_uri(settings))


def _activate(settings: Settings | None = None) -> None:
    import mlflow

    mlflow.set_tracking_uri(_tracking_uri(settings))
    mlflow.set_registry_uri(_tracking_uri(settings))


def run_url(run_id: str, experiment_id: str | None = None, settings: Settings | None = None) -> str:
    base = _tracking_uri(settings).rstrip("/")
    if not base.startswith("http"):
        return f"{base} (run {run_id})"
    if experiment_id is None:
        experiment_id = client(settings).get_run(run_id).info.experiment_id
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}"


def model_version_url(name: str, version: str, settings: Settings | None = None) -> str:
    base = _tracking_uri(settings).rstrip("/")
    return f"{base}/#/models/{name}/versions/{version}" if base.startswith("http") else f"models:/{name}/{version}"


def _pip_requirements() -> list[str]:
    # Inferring requirements costs ~2 s per log_model; the pipeline needs exactly these.
    from importlib import metadata

    return [f"{pkg}=={metadata.version(pkg)}" for pkg in ("mlflow", "scikit-learn", "xgboost", "pandas", "numpy", "skops")]


def _info(mv, mlflow_client, with_metrics: bool = True) -> ModelVersionInfo:
    metrics: dict[str, float] = {}
    if with_metrics and mv.run_id:
        metrics = dict(mlflow_client.get_run(mv.run_id).data.metrics)
    return ModelVersionInfo(
        name=mv.name,
        version=str(mv.version),
        run_id=mv.run_id or "",
        model_uri=f"models:/{mv.name}/{mv.version}",
        source=mv.source,
        aliases=tuple(getattr(mv, "aliases", ()) or ()),
        tags=dict(mv.tags or {}),
        metrics=metrics,
        creation_timestamp=int(mv.creation_timestamp or 0),
    )


def find_by_training_key(name: str, training_key: str, settings: Settings | None = None) -> ModelVersionInfo | None:
    mlflow_client = client(settings)
    found = mlflow_client.search_model_versions(f"name = '{name}' and tags.`{TRAINING_KEY_TAG}` = '{training_key}'")
    if not found:
        return None
    return _info(sorted(found, key=lambda mv: int(mv.version))[0], mlflow_client)


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


def register_training(
    spec: Spec,
    train: TrainResult,
    evaluation: EvalResult,
    features: FeatureSet,
    lineage: Lineage,
    training_key: str,
    alias: str = CHALLENGER,
    settings: Settings | None = None,
) -> RegistrationResult:
    """Log one run (params, metrics, lineage, model, reference sample, holdout) and register a version."""
    import mlflow
    from mlflow.models import infer_signature

    name = spec.registered_model_name
    existing = find_by_training_key(name, training_key, settings)
    if existing is not None:
        log.info("training key %s already registered as %s v%s: nothing new registered", training_key, name, existing.version)
        return RegistrationResult(name, existing.version, existing.run_id, existing.model_uri, False, run_url(existing.run_id, settings=settings), alias)

    _activate(settings)
    mlflow_client = client(settings)
    experiment = mlflow.set_experiment(f"leanops/{name}")
    version = None
    run = mlflow_client.create_run(experiment.experiment_id, run_name=f"retrain-{training_key[:8]}", tags={
        **lineage.as_tags(), TRAINING_KEY_TAG: training_key, "leanops.model": name, "mlflow.source.git.commit": lineage.git_commit,
    })
    run_id = run.info.run_id
    try:
        with mlflow.start_run(run_id=run_id), tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            mlflow.log_params({k: v for k, v in train.params.items() if v is not None})
            metrics = {
                **evaluation.model,
                **{f"baseline_{k}": v for k, v in evaluation.baseline.items()},
                **{f"rows_{k}": float(v) for k, v in features.sizes.items()},
                **{f"rows_excluded_{k}": float(v) for k, v in features.rows_excluded.items()},
                "fit_seconds": train.fit_seconds,
            }
            mlflow.log_metrics(metrics)
            mlflow.log_dict({"split": features.split_description, "spec": spec.model_dump(mode="json")}, "spec.json")
            (folder / IMPORTANCE_ARTIFACT).parent.mkdir(parents=True, exist_ok=True)
            (folder / IMPORTANCE_ARTIFACT).write_text(json.dumps(train.feature_importance, indent=1))
            holdout = features.X_holdout.assign(**{spec.target.name: features.y_holdout.to_numpy()})
            _write_parquet(reference_sample(features, spec), folder, REFERENCE_ARTIFACT)
            _write_parquet(holdout, folder, HOLDOUT_ARTIFACT)
            mlflow.log_artifacts(str(folder))

            example = _example_frame(features.X_train[model_input_columns(spec)], spec)
            scores = train.model.predict_proba(features.X_train.head(5)) if spec.task == "binary" else train.model.predict(features.X_train.head(5))
            logged = mlflow.sklearn.log_model(
                train.model,
                name="model",
                signature=infer_signature(example, scores),
                input_example=example,
                pip_requirements=_pip_requirements(),
                skops_trusted_types=SKOPS_TRUSTED_TYPES,
                pyfunc_predict_fn="predict_proba" if spec.task == "binary" else "predict",
            )
        try:
            mlflow_client.get_registered_model(name)
        except Exception:  # noqa: BLE001 - absent: create it (a concurrent creator makes this fail harmlessly)
            try:
                mlflow_client.create_registered_model(name, description=spec.description)
            except Exception:  # noqa: BLE001
                mlflow_client.get_registered_model(name)
        version_tags = {
            **lineage.as_tags(),
            TRAINING_KEY_TAG: training_key,
            "leanops.primary_metric": spec.metric.primary,
            f"leanops.metric.{spec.metric.primary}": f"{evaluation.model[spec.metric.primary]:.6f}",
        }
        mv = mlflow_client.create_model_version(
            name, source=logged.model_uri, run_id=run_id, tags=version_tags, model_id=logged.model_id,
            run_link=run_url(run_id, experiment.experiment_id, settings),
        )
        version = str(mv.version)
        mlflow_client.set_registered_model_alias(name, alias, version)
        mlflow_client.set_terminated(run_id, "FINISHED")
    except Exception as exc:
        _undo_registration(mlflow_client, name, version, run_id)
        raise RegistrationFailed(f"registering {name} failed ({type(exc).__name__}: {exc}); nothing was registered") from exc
    return RegistrationResult(name, version, run_id, f"models:/{name}/{version}", True, run_url(run_id, experiment.experiment_id, settings), alias)


def _undo_registration(mlflow_client, name: str, version: str | None, run_id: str) -> None:
    if version is not None:
        try:
            mlflow_client.delete_model_version(name, version)
        except Exception:  # noqa: BLE001 - best effort; the original error is what the user needs
            log.exception("could not delete half-registered version %s v%s", name, version)
    try:
        mlflow_client.set_terminated(run_id, "FAILED")
    except Exception:  # noqa: BLE001
        log.exception("could not mark run %s failed", run_id)


# --- reading the registry -----------------------------------------------------------------------


def get_version(name: str, version: str, settings: Settings | None = None) -> ModelVersionInfo:
    mlflow_client = client(settings)
    try:
        mv = mlflow_client.get_model_version(name, str(version))
    except Exception as exc:  # noqa: BLE001 - MLflow raises its own RestException / MlflowException
        raise ModelNotFound(f"model {name!r} has no version {version!r}") from exc
    return _info(mv, mlflow_client)


def get_alias(name: str, alias: str, settings: Settings | None = None) -> ModelVersionInfo | None:
    """The version an alias points at, or None when the alias (or the model) does not exist."""
    mlflow_client = client(settings)
    try:
        mv = mlflow_client.get_model_version_by_alias(name, alias)
    except Exception:  # noqa: BLE001
        return None
    return _info(mv, mlflow_client)


def get_champion(name: str, settings: Settings | None = None) -> ModelVersionInfo:
    info = get_alias(name, CHAMPION, settings)
    if info is None:
        raise NoChampion(f"model {name!r} has no champion yet")
    return info


def model_exists(name: str, settings: Settings | None = None) -> bool:
    try:
        client(settings).get_registered_model(name)
    except Exception:  # noqa: BLE001
        return False
    return True


def list_versions(name: str, settings: Settings | None = None) -> list[ModelVersionInfo]:
    mlflow_client = client(settings)
    versions = mlflow_client.search_model_versions(f"name = '{name}'")
    return sorted((_info(mv, mlflow_client, with_metrics=False) for mv in versions), key=lambda i: int(i.version))


def load_model(info: ModelVersionInfo, settings: Settings | None = None) -> Any:
    import mlflow

    _activate(settings)
    return mlflow.sklearn.load_model(info.model_uri)


def _download(run_id: str, artifact: str, settings: Settings | None = None) -> Path:
    import mlflow.artifacts

    _activate(settings)
    target = Path(tempfile.mkdtemp(prefix="leanops-artifact-"))
    return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact, dst_path=str(target)))


def load_reference_sample(info: ModelVersionInfo, settings: Settings | None = None) -> pd.DataFrame:
    return pd.read_parquet(_download(info.run_id, REFERENCE_ARTIFACT, settings))


def load_holdout(info: ModelVersionInfo, settings: Settings | None = None) -> pd.DataFrame:
    return pd.read_parquet(_download(info.run_id, HOLDOUT_ARTIFACT, settings))


def load_feature_importance(info: ModelVersionInfo, settings: Settings | None = None) -> dict[str, float]:
    return json.loads(_download(info.run_id, IMPORTANCE_ARTIFACT, settings).read_text())


# --- changing aliases and tags (promotion, rollback) ---------------------------------------------


def set_alias(name: str, alias: str, version: str, settings: Settings | None = None) -> None:
    client(settings).set_registered_model_alias(name, alias, str(version))


def delete_alias(name: str, alias: str, settings: Settings | None = None) -> None:
    client(settings).delete_registered_model_alias(name, alias)


def set_version_tags(name: str, version: str, tags: dict[str, str], settings: Settings | None = None) -> None:
    mlflow_client = client(settings)
    for key, value in tags.items():
        mlflow_client.set_model_version_tag(name, str(version), key, value)


def set_model_tags(name: str, tags: dict[str, str], settings: Settings | None = None) -> None:
    mlflow_client = client(settings)
    for key, value in tags.items():
        mlflow_client.set_registered_model_tag(name, key, value)


def get_model_tags(name: str, settings: Settings | None = None) -> dict[str, str]:
    try:
        return dict(client(settings).get_registered_model(name).tags or {})
    except Exception as exc:  # noqa: BLE001
        raise ModelNotFound(f"no registered model {name!r}") from exc
