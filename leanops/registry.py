"""The model registry and experiment tracking: the only MLflow user.

Registration is all-or-nothing: a failure after the version exists deletes the version, marks the
run failed and moves no alias. Registration is idempotent: a training key (data fingerprint, spec,
params, code) already registered returns the existing version instead of creating another.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from leanops import promotion
from leanops.errors import ModelNotFound, NoChampion, RegistrationFailed, RegistryUnavailable
from leanops.features import model_input_columns
from leanops.results import (
    EvalResult,
    FeatureSet,
    Lineage,
    RegistrationResult,
    SmokeTestResult,
    TrainResult,
    TuningResult,
)
from leanops.settings import Settings, get_settings
from leanops.spec import Spec, parse_spec

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS_CHAMPION = "previous-champion"
TRAINING_KEY_TAG = "leanops.training_key"
REFERENCE_ARTIFACT = "reference/reference.parquet"
HOLDOUT_ARTIFACT = "evaluation/holdout.parquet"
IMPORTANCE_ARTIFACT = "evaluation/feature_importance.json"
SPEC_ARTIFACT = "spec.json"
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


def _http_policy(settings: Settings | None = None) -> None:
    # MLflow reads its HTTP retry policy from these variables on every request, nowhere else. Its own
    # default (7 retries, factor 2) spends about four minutes on a dead server before any error: our
    # task retries own the backoff, so MLflow's stay short and an outage surfaces in seconds.
    settings = settings or get_settings()
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(settings.mlflow_http_retries)
    os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] = "1"
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(settings.mlflow_http_timeout_seconds)


def client(settings: Settings | None = None):
    from mlflow import MlflowClient

    _http_policy(settings)
    return MlflowClient(tracking_uri=_tracking_uri(settings), registry_uri=_tracking_uri(settings))


def _activate(settings: Settings | None = None) -> None:
    import mlflow

    _http_policy(settings)
    mlflow.set_tracking_uri(_tracking_uri(settings))
    mlflow.set_registry_uri(_tracking_uri(settings))


# --- what an MLflow error means ---------------------------------------------------------------------
# "Not there" (an absent model, version or alias) is an answer; "MLflow unreachable or failing" is
# not, and must never be read as one: it becomes RegistryUnavailable, which tasks retry and then report.
_ABSENT_CODES = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")


def _is_absent(exc: BaseException) -> bool:
    from mlflow.exceptions import MlflowException

    return isinstance(exc, MlflowException) and exc.error_code in _ABSENT_CODES


def _is_unavailable(exc: BaseException) -> bool:
    """Refused or timed-out connections, and answers 429 / 5xx (from MLflow or a proxy in front of it)."""
    import requests
    from mlflow.exceptions import MlflowException, RestException

    if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout, ConnectionError, TimeoutError)):
        return True
    if not isinstance(exc, MlflowException):
        return False
    # MLflow raises INTERNAL_ERROR for its own client-side mistakes too: only a server's answer or a
    # failed request ("API request to ... failed") says anything about the server.
    answered_or_failed = isinstance(exc, RestException) or str(exc.message).startswith("API request to")
    status = exc.get_http_status_code()
    return answered_or_failed and (status == 429 or status >= 500)


def _unavailable_error(exc: BaseException, what: str, settings: Settings | None = None) -> RegistryUnavailable:
    return RegistryUnavailable(
        f"MLflow at {_tracking_uri(settings)} is unreachable or failing ({what}: {type(exc).__name__}: {exc})"[:1000]
        + "; nothing was read as absent: retry when it is back"
    )


def _speaks_to_mlflow(function):
    """Turn MLflow being unreachable or failing into RegistryUnavailable; every other error passes unchanged."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except RegistryUnavailable:
            raise
        except Exception as exc:
            if _is_unavailable(exc):
                raise _unavailable_error(exc, function.__name__, kwargs.get("settings")) from exc
            raise

    return wrapper


def _experiment_id(mlflow_client, name: str) -> str:
    """The experiment's id, creating it on first use (a concurrent creator wins harmlessly)."""
    experiment = mlflow_client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return mlflow_client.create_experiment(name)
    except Exception as exc:  # noqa: BLE001 - created meanwhile by another run (an outage re-raises)
        if _is_unavailable(exc):
            raise
        return mlflow_client.get_experiment_by_name(name).experiment_id


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


@_speaks_to_mlflow
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
    experiment_id = _experiment_id(mlflow_client, f"leanops/{name}")
    version = None
    run = mlflow_client.create_run(experiment_id, run_name=f"retrain-{training_key[:8]}", tags={
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
            mlflow.log_dict({"split": features.split_description, "spec": spec.model_dump(mode="json")}, SPEC_ARTIFACT)
            (folder / IMPORTANCE_ARTIFACT).parent.mkdir(parents=True, exist_ok=True)
            (folder / IMPORTANCE_ARTIFACT).write_text(json.dumps(train.feature_importance, indent=1))
            holdout = features.X_holdout.assign(**{spec.target.name: features.y_holdout.to_numpy()})
            _write_parquet(reference_sample(features, spec), folder, REFERENCE_ARTIFACT)
            _write_parquet(holdout, folder, HOLDOUT_ARTIFACT)
            mlflow.log_artifacts(str(folder))

            example = _example_frame(features.X_train[model_input_columns(spec)], spec)
            scores = train.model.predict_proba(features.X_train.head(5)) if spec.is_classifier else train.model.predict(features.X_train.head(5))
            logged = mlflow.sklearn.log_model(
                train.model,
                name="model",
                signature=infer_signature(example, scores),
                input_example=example,
                pip_requirements=_pip_requirements(),
                skops_trusted_types=SKOPS_TRUSTED_TYPES,
                pyfunc_predict_fn="predict_proba" if spec.is_classifier else "predict",
            )
        try:
            mlflow_client.get_registered_model(name)
        except Exception as exc:  # noqa: BLE001 - absent: create it; anything else is the outer failure
            if not _is_absent(exc):
                raise
            try:
                mlflow_client.create_registered_model(name, description=spec.description)
            except Exception:  # noqa: BLE001 - a concurrent creator won: it exists now (re-read, or fail)
                mlflow_client.get_registered_model(name)
        version_tags = {
            **lineage.as_tags(),
            TRAINING_KEY_TAG: training_key,
            "leanops.primary_metric": spec.metric.primary,
            f"leanops.metric.{spec.metric.primary}": f"{evaluation.model[spec.metric.primary]:.6f}",
        }
        mv = mlflow_client.create_model_version(
            name, source=logged.model_uri, run_id=run_id, tags=version_tags, model_id=logged.model_id,
            run_link=run_url(run_id, experiment_id, settings),
        )
        version = str(mv.version)
        mlflow_client.set_registered_model_alias(name, alias, version)
        mlflow_client.set_terminated(run_id, "FINISHED")
    except Exception as exc:
        _undo_registration(mlflow_client, name, version, run_id)
        if _is_unavailable(exc):
            raise _unavailable_error(exc, f"registering {name}; nothing was registered", settings) from exc
        raise RegistrationFailed(f"registering {name} failed ({type(exc).__name__}: {exc}); nothing was registered") from exc
    return RegistrationResult(name, version, run_id, f"models:/{name}/{version}", True, run_url(run_id, experiment_id, settings), alias)


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


@_speaks_to_mlflow
def get_version(name: str, version: str, settings: Settings | None = None) -> ModelVersionInfo:
    mlflow_client = client(settings)
    try:
        mv = mlflow_client.get_model_version(name, str(version))
    except Exception as exc:  # noqa: BLE001 - only "absent" becomes ModelNotFound; an outage re-raises
        if _is_absent(exc):
            raise ModelNotFound(f"model {name!r} has no version {version!r}") from exc
        raise
    return _info(mv, mlflow_client)


@_speaks_to_mlflow
def get_alias(name: str, alias: str, settings: Settings | None = None) -> ModelVersionInfo | None:
    """The version an alias points at, or None when the alias (or the model) does not exist.
    MLflow unreachable or failing raises RegistryUnavailable: an outage never reads as "no champion"."""
    mlflow_client = client(settings)
    try:
        mv = mlflow_client.get_model_version_by_alias(name, alias)
    except Exception as exc:  # noqa: BLE001 - only "absent" is None; an outage re-raises
        if _is_absent(exc):
            return None
        raise
    return _info(mv, mlflow_client)


def get_champion(name: str, settings: Settings | None = None) -> ModelVersionInfo:
    info = get_alias(name, CHAMPION, settings)
    if info is None:
        raise NoChampion(f"model {name!r} has no champion yet")
    return info


@_speaks_to_mlflow
def model_exists(name: str, settings: Settings | None = None) -> bool:
    try:
        client(settings).get_registered_model(name)
    except Exception as exc:  # noqa: BLE001 - only "absent" is False; an outage re-raises
        if _is_absent(exc):
            return False
        raise
    return True


@_speaks_to_mlflow
def list_versions(name: str, settings: Settings | None = None) -> list[ModelVersionInfo]:
    mlflow_client = client(settings)
    versions = mlflow_client.search_model_versions(f"name = '{name}'")
    return sorted((_info(mv, mlflow_client, with_metrics=False) for mv in versions), key=lambda i: int(i.version))


@_speaks_to_mlflow
def load_model(info: ModelVersionInfo, settings: Settings | None = None) -> Any:
    import mlflow

    _activate(settings)
    return mlflow.sklearn.load_model(info.model_uri)


@_speaks_to_mlflow
def _read_artifact(run_id: str, artifact: str, read, settings: Settings | None = None):
    """Download one run artifact into a temporary folder, read it with ``read(path)``, remove the copy."""
    import mlflow.artifacts

    _activate(settings)
    with tempfile.TemporaryDirectory(prefix="leanops-artifact-") as folder:
        return read(Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact, dst_path=folder)))


def load_reference_sample(info: ModelVersionInfo, settings: Settings | None = None) -> pd.DataFrame:
    return _read_artifact(info.run_id, REFERENCE_ARTIFACT, pd.read_parquet, settings)


def load_holdout(info: ModelVersionInfo, settings: Settings | None = None) -> pd.DataFrame:
    return _read_artifact(info.run_id, HOLDOUT_ARTIFACT, pd.read_parquet, settings)


def load_recorded_spec(info: ModelVersionInfo, settings: Settings | None = None) -> Spec:
    """The spec the version was trained with, as registration recorded it (``spec.json``): its features,
    target and metrics, whatever the spec file says today. A SpecError when it no longer parses."""
    recorded = _read_artifact(info.run_id, SPEC_ARTIFACT, lambda path: json.loads(path.read_text()), settings)
    return parse_spec(recorded["spec"], f"{info.name} v{info.version} ({SPEC_ARTIFACT} of run {info.run_id})")


def load_feature_importance(info: ModelVersionInfo, settings: Settings | None = None) -> dict[str, float]:
    return _read_artifact(info.run_id, IMPORTANCE_ARTIFACT, lambda path: json.loads(path.read_text()), settings)


# --- changing aliases and tags (promotion, rollback) ---------------------------------------------


@_speaks_to_mlflow
def set_alias(name: str, alias: str, version: str, settings: Settings | None = None) -> None:
    client(settings).set_registered_model_alias(name, alias, str(version))


@_speaks_to_mlflow
def delete_alias(name: str, alias: str, settings: Settings | None = None) -> None:
    client(settings).delete_registered_model_alias(name, alias)


@_speaks_to_mlflow
def set_version_tags(name: str, version: str, tags: dict[str, str], settings: Settings | None = None) -> None:
    mlflow_client = client(settings)
    for key, value in tags.items():
        mlflow_client.set_model_version_tag(name, str(version), key, value)


@_speaks_to_mlflow
def set_model_tags(name: str, tags: dict[str, str], settings: Settings | None = None) -> None:
    mlflow_client = client(settings)
    for key, value in tags.items():
        mlflow_client.set_registered_model_tag(name, key, value)


@_speaks_to_mlflow
def get_model_tags(name: str, settings: Settings | None = None) -> dict[str, str]:
    try:
        return dict(client(settings).get_registered_model(name).tags or {})
    except Exception as exc:  # noqa: BLE001 - only "absent" becomes ModelNotFound; an outage re-raises
        if _is_absent(exc):
            raise ModelNotFound(f"no registered model {name!r}") from exc
        raise


@_speaks_to_mlflow
def get_model_tag(name: str, key: str, settings: Settings | None = None) -> str | None:
    """One tag of the registered model; None when the model or the tag does not exist. Any other
    failure (MLflow unreachable) raises: a dead server never reads as "no tag"."""
    from mlflow.exceptions import MlflowException

    try:
        tags = client(settings).get_registered_model(name).tags or {}
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    return tags.get(key)


@_speaks_to_mlflow
def set_model_tag(name: str, key: str, value: str | None, settings: Settings | None = None) -> None:
    """Set (or, with ``value=None``, delete) one tag of the registered model, creating the model
    when it has no version yet (a tag can describe a model before its first training)."""
    from mlflow.exceptions import MlflowException

    mlflow_client = client(settings)
    if value is None:
        if get_model_tag(name, key, settings) is not None:
            mlflow_client.delete_registered_model_tag(name, key)
        return
    try:
        mlflow_client.set_registered_model_tag(name, key, value)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        mlflow_client.create_registered_model(name, tags={key: value})


# --- the audit trail: one run per alias move (entries and their order: leanops.audit, leanops.aliases) ---


def _audit_experiment(name: str) -> str:
    return f"leanops/{name}/audit"


@_speaks_to_mlflow
def start_audit_run(name: str, tags: dict[str, str], run_name: str, start_time_ms: int | None = None,
                    settings: Settings | None = None) -> str:
    """A run (status RUNNING) in the model's audit experiment holding one entry; returns its id."""
    mlflow_client = client(settings)
    experiment_id = _experiment_id(mlflow_client, _audit_experiment(name))
    return mlflow_client.create_run(experiment_id, start_time=start_time_ms, tags=tags, run_name=run_name).info.run_id


@_speaks_to_mlflow
def end_audit_run(run_id: str, failure: str | None = None, settings: Settings | None = None) -> None:
    """FINISHED (the entry holds), or FAILED with why (the move it announced did not happen)."""
    mlflow_client = client(settings)
    if failure is not None:
        mlflow_client.set_tag(run_id, "leanops.audit.failure", failure[:8000])
    mlflow_client.set_terminated(run_id, "FAILED" if failure is not None else "FINISHED")


@_speaks_to_mlflow
def finished_audit_runs(name: str, settings: Settings | None = None) -> list[dict[str, str]]:
    """The tags of every FINISHED run of the model's audit experiment, oldest first (all pages)."""
    mlflow_client = client(settings)
    experiment = mlflow_client.get_experiment_by_name(_audit_experiment(name))
    if experiment is None:
        return []
    found: list[dict[str, str]] = []
    page_token = None
    while True:
        page = mlflow_client.search_runs(
            [experiment.experiment_id], filter_string="attributes.status = 'FINISHED'",
            order_by=["attributes.start_time ASC"], max_results=1000, page_token=page_token,
        )
        found.extend(dict(run.data.tags) for run in page)
        page_token = page.token
        if not page_token:
            return found


@_speaks_to_mlflow
def delete_model_tags(name: str, keys: list[str], settings: Settings | None = None) -> None:
    mlflow_client = client(settings)
    for key in keys:
        mlflow_client.delete_registered_model_tag(name, key)


# --- promotion and rollback: resolving versions, smoke tests (the alias moves: leanops.aliases) ------


@_speaks_to_mlflow
def alias_version(name: str, alias: str, settings: Settings | None = None) -> str | None:
    """The version an alias points at; None only when MLflow says the alias does not exist
    (any other failure raises, so a flaky read never passes for "no champion")."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client(settings).get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def resolve_version(name: str, ref: str | None = None, settings: Settings | None = None) -> ModelVersionInfo:
    """A version given by number or by alias (default: ``challenger``), or a ModelNotFound saying which part is missing."""
    ref = str(ref or CHALLENGER).strip()
    if not model_exists(name, settings):
        raise ModelNotFound(f"no registered model {name!r}")
    if ref.isdigit():
        info = get_version(name, ref, settings)
    else:
        info = get_alias(name, ref, settings)
        if info is None:
            raise ModelNotFound(
                f"model {name!r} has no alias {ref!r} (never set, or its version was deleted, which removes its aliases)"
            )
    if not info.model_uri or not info.run_id:
        raise ModelNotFound(f"{name} v{info.version} has no run or model to evaluate")
    return info


@_speaks_to_mlflow
def load_pyfunc(info: ModelVersionInfo, settings: Settings | None = None) -> Any:
    """The version as a server loads it (``models:/<name>/<version>``, pyfunc flavour)."""
    import mlflow.pyfunc

    _activate(settings)
    return mlflow.pyfunc.load_model(info.model_uri)


@_speaks_to_mlflow
def load_input_example(info: ModelVersionInfo, settings: Settings | None = None) -> pd.DataFrame | None:
    """The input example logged with the model (raw model input columns), or None if none was logged."""
    from mlflow.models import Model

    _activate(settings)
    example = Model.load(info.model_uri).load_input_example(info.model_uri)
    return None if example is None else pd.DataFrame(example)


def smoke_test(info: ModelVersionInfo, spec: Spec, settings: Settings | None = None) -> SmokeTestResult:
    """Load the version as served and predict on its input example. A failure is a result, not an error:
    a model that cannot load or predict fails its promotion gate."""
    try:
        model = load_pyfunc(info, settings)
        example = load_input_example(info, settings)
    except Exception as exc:  # noqa: BLE001 - whatever breaks loading breaks serving too (but an outage is no verdict)
        if _is_unavailable(exc) or isinstance(exc, RegistryUnavailable):
            raise
        return SmokeTestResult(info.model_uri, False, 0, f"cannot load: {type(exc).__name__}: {exc}"[:500])
    if example is None or example.empty:
        return SmokeTestResult(info.model_uri, False, 0, "no input example was logged with the model")
    try:
        predictions = model.predict(example)
    except Exception as exc:  # noqa: BLE001
        return SmokeTestResult(info.model_uri, False, len(example), f"cannot predict: {type(exc).__name__}: {exc}"[:500])
    return promotion.check_predictions(info.model_uri, predictions, len(example), spec)


# --- monitoring runs ----------------------------------------------------------------------------


@_speaks_to_mlflow
def log_drift_check(
    model: str, version: str, batch_uri: str, result: Any, report_html: str, report_json: str, settings: Settings | None = None
) -> tuple[str, str]:
    """One MLflow run per drift check (experiment ``leanops/<model>/monitoring``) holding the Evidently
    report; returns (run id, URL of the report artifact in the MLflow UI)."""
    import mlflow

    _activate(settings)
    mlflow_client = client(settings)
    experiment_id = _experiment_id(mlflow_client, f"leanops/{model}/monitoring")
    run = mlflow_client.create_run(
        experiment_id,
        run_name=f"drift-{batch_uri.rsplit('/', 1)[-1]}",
        tags={"leanops.model": model, "leanops.champion_version": str(version), "leanops.batch_uri": batch_uri,
              "leanops.drift_status": result.status},
    )
    run_id = run.info.run_id
    try:
        now_ms = int(time.time() * 1000)
        metrics = {"drift_share": float(result.drift_share), "n_current": float(result.n_current)}
        metrics.update({f"drift_{f.name}": float(f.score) for f in result.features if f.score == f.score})
        if result.prediction_drift_score is not None:
            metrics["prediction_drift_score"] = float(result.prediction_drift_score)
        if result.performance is not None:
            metrics[f"batch_{result.performance.metric}"] = float(result.performance.value)
        mlflow_client.log_batch(run_id, metrics=[mlflow.entities.Metric(k, v, now_ms, 0) for k, v in metrics.items()])
        mlflow_client.log_text(run_id, report_html, "drift/report.html")
        mlflow_client.log_text(run_id, report_json, "drift/report.json")
        mlflow_client.set_terminated(run_id, "FINISHED")
    except Exception:
        mlflow_client.set_terminated(run_id, "FAILED")
        raise
    base = run_url(run_id, experiment_id, settings)
    return run_id, (f"{base}/artifacts/drift/report.html" if base.startswith("http") else base)


@_speaks_to_mlflow
def drift_check_metrics(model: str, batch_uri: str, settings: Settings | None = None) -> dict[str, float]:
    """Metrics of the latest monitoring run for a batch (drift share, per-feature scores, batch metric)."""
    mlflow_client = client(settings)
    experiment = mlflow_client.get_experiment_by_name(f"leanops/{model}/monitoring")
    if experiment is None:
        return {}
    runs = mlflow_client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`leanops.batch_uri` = '{batch_uri}'",
        order_by=["attributes.start_time DESC"], max_results=1,
    )
    return dict(runs[0].data.metrics) if runs else {}

# --- tuning studies -------------------------------------------------------------------------------
# One run per study (experiment ``leanops/<model>``): tags ``leanops.study_name`` (how a resumed study
# finds its run again) and the best parameters as ``leanops.best.<name>`` (tags: params are immutable
# and a resumed study may find better ones); params once: metric, direction, search space; metrics in
# batches with step = trials so far, and every completed trial's value (only trials not logged before);
# artifacts: trials.csv, best_params.json, report.html (self-contained, readable offline).

STUDY_TAG = "leanops.study_name"
TRIALS_LOGGED_TAG = "leanops.trials_logged"
TRIALS_ARTIFACT = "tuning/trials.csv"
BEST_PARAMS_ARTIFACT = "tuning/best_params.json"
TUNING_REPORT_ARTIFACT = "tuning/report.html"
_BATCH = 1000  # MLflow's log_batch limit on metrics per call


def _search_space_params(spec: Spec) -> dict[str, str]:
    params = {}
    for name, dim in sorted(spec.tuning.search_space.items()):
        if dim.type == "categorical":
            params[f"space.{name}"] = f"categorical{dim.choices}"
        else:
            params[f"space.{name}"] = f"{dim.type}[{dim.low}, {dim.high}]{' log' if dim.log else ''}"
    return params


@_speaks_to_mlflow
def log_study(
    result: TuningResult, spec: Spec, *, tags: dict[str, str] | None = None, settings: Settings | None = None
) -> TuningResult:
    """Log a summarized study to MLflow; return the result with ``mlflow_run_id`` and ``report_uris`` set.

    Idempotent per study: logging a resumed study again updates the same run.
    """
    from mlflow.entities import Metric, RunTag

    mlflow_client = client(settings)
    experiment_name = f"leanops/{spec.name}"
    experiment_id = _experiment_id(mlflow_client, experiment_name)
    found = mlflow_client.search_runs(
        [experiment_id], filter_string=f"tags.`{STUDY_TAG}` = '{result.study_name}'", max_results=1
    )
    if found:
        run = found[0]
        mlflow_client.update_run(run.info.run_id, status="RUNNING")
    else:
        run = mlflow_client.create_run(
            experiment_id, run_name=f"tune-{result.study_name}", tags={STUDY_TAG: result.study_name, "leanops.model": spec.name}
        )
        mlflow_client.log_batch(
            run.info.run_id,
            params=[
                _param(k, v)
                for k, v in {
                    "study_name": result.study_name,
                    "metric": result.metric,
                    "direction": result.direction,
                    "n_estimators_cap": spec.tuning.n_estimators,
                    "early_stopping_rounds": spec.tuning.early_stopping_rounds,
                    **_search_space_params(spec),
                }.items()
            ],
        )
    run_id = run.info.run_id
    already_logged = int(run.data.tags.get(TRIALS_LOGGED_TAG, -1)) if found else -1

    now = int(time.time() * 1000)
    step = result.n_trials
    summary: dict[str, float] = {
        f"best_{result.metric}": result.best_value,
        "n_trials": result.n_trials,
        "n_complete": result.n_complete,
        "n_pruned": result.n_pruned,
        "n_failed": result.n_failed,
    }
    if result.default_value is not None:
        summary[f"default_{result.metric}"] = result.default_value
        summary[f"improvement_{result.metric}"] = result.improvement
    metrics = [Metric(k, float(v), now, step) for k, v in summary.items()]
    last_number = already_logged
    if result.trials is not None and not result.trials.empty:
        complete = result.trials[(result.trials["state"] == "COMPLETE") & (result.trials["number"] > already_logged)]
        metrics += [Metric(f"trial_{result.metric}", float(v), now, int(n)) for n, v in zip(complete["number"], complete["value"])]
        last_number = max(already_logged, int(result.trials["number"].max()))
    run_tags = {
        **(tags or {}),
        "leanops.storage": result.storage,
        TRIALS_LOGGED_TAG: str(last_number),
        **{f"leanops.best.{k}": str(v) for k, v in sorted(result.best_params.items())},
    }
    for start in range(0, max(len(metrics), 1), _BATCH):
        mlflow_client.log_batch(
            run_id,
            metrics=metrics[start : start + _BATCH],
            tags=[RunTag(k, v) for k, v in run_tags.items()] if start == 0 else [],
        )

    uris = {"best_params": f"runs:/{run_id}/{BEST_PARAMS_ARTIFACT}"}
    mlflow_client.log_dict(run_id, _jsonable(result.best_params), BEST_PARAMS_ARTIFACT)
    if result.trials is not None:
        mlflow_client.log_text(run_id, result.trials.to_csv(index=False), TRIALS_ARTIFACT)
        uris["trials"] = f"runs:/{run_id}/{TRIALS_ARTIFACT}"
    if result.report_html:
        mlflow_client.log_text(run_id, result.report_html, TUNING_REPORT_ARTIFACT)
        uris["report"] = f"runs:/{run_id}/{TUNING_REPORT_ARTIFACT}"
    mlflow_client.set_terminated(run_id, "FINISHED")
    uris["run"] = run_url(run_id, experiment_id, settings)
    return dataclasses.replace(result, mlflow_run_id=run_id, report_uris=uris)


def _param(key: str, value: Any):
    from mlflow.entities import Param

    return Param(key, str(value)[:6000])


def _jsonable(params: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(params, default=lambda v: v.item() if hasattr(v, "item") else str(v)))
