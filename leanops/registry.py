"""The model registry: the MLflow adapter for registered models, their versions, aliases and tags, and
for loading a version (as trained, as served) with the artifacts its training run recorded.

Reaching MLflow and what its errors mean: ``leanops.mlflow_access``; experiments and runs:
``leanops.tracking``. Registering a training: ``leanops.registration``; moving aliases with their
audit entries: ``leanops.aliases``. MLflow unreachable is RegistryUnavailable, never an absence.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from leanops.errors import ModelNotFound, NoChampion
from leanops.local_cache import CacheLimits, PruneResult, prune, use_once_fetched
from leanops.mlflow_access import activate, client, is_absent, speaks_to_mlflow
from leanops.results import retrain_key_tag
from leanops.settings import Settings, get_settings
from leanops.spec import Spec, parse_spec

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS_CHAMPION = "previous-champion"
TRAINING_KEY_TAG = "leanops.training_key"
# A version is written "pending" and marked "complete" only once its alias is set: a version still
# pending was left by a registration that did not finish (its process or MLflow died). Versions from
# before this tag existed have none and are complete.
REGISTRATION_TAG = "leanops.registration"
PENDING, COMPLETE = "pending", "complete"
REFERENCE_ARTIFACT = "reference/reference.parquet"
HOLDOUT_ARTIFACT = "evaluation/holdout.parquet"
IMPORTANCE_ARTIFACT = "evaluation/feature_importance.json"
SPEC_ARTIFACT = "spec.json"
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

    @property
    def registration_complete(self) -> bool:
        return self.tags.get(REGISTRATION_TAG) != PENDING


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


@speaks_to_mlflow
def _versions_tagged(name: str, tag: str, value: str | None, settings: Settings | None = None) -> list[ModelVersionInfo]:
    """Versions of ``name`` whose tag ``tag`` equals ``value`` (``value`` ``None``: carry the tag at all)."""
    mlflow_client = client(settings)
    condition = "LIKE '%'" if value is None else f"= '{value}'"
    found = mlflow_client.search_model_versions(f"name = '{name}' and tags.`{tag}` {condition}")
    return [_info(mv, mlflow_client) for mv in sorted(found, key=lambda mv: int(mv.version))]


def versions_by_training_key(name: str, training_key: str, settings: Settings | None = None) -> list[ModelVersionInfo]:
    """Every version of ``name`` registered from ``training_key``, complete or not, oldest first."""
    return _versions_tagged(name, TRAINING_KEY_TAG, training_key, settings)


def find_by_retrain_key(name: str, retrain_key: str, settings: Settings | None = None) -> ModelVersionInfo | None:
    """The first complete version a retrain with ``retrain_key`` (leanops.lineage.retrain_key) registered, or None."""
    complete = [info for info in _versions_tagged(name, retrain_key_tag(retrain_key), None, settings) if info.registration_complete]
    return complete[0] if complete else None


def find_by_training_key(name: str, training_key: str, settings: Settings | None = None) -> ModelVersionInfo | None:
    """The first complete version registered from ``training_key``, or None."""
    complete = [info for info in versions_by_training_key(name, training_key, settings) if info.registration_complete]
    return complete[0] if complete else None


def require_complete(info: ModelVersionInfo) -> ModelVersionInfo:
    """``info`` if its registration finished; a ModelNotFound naming the fix otherwise (no alias move,
    promotion or rollback ever takes a half-registered version)."""
    if not info.registration_complete:
        raise ModelNotFound(
            f"{info.name} v{info.version} is a registration that did not finish (run {info.run_id or '?'} stopped "
            "before marking it complete): rerun the retrain, which removes it and registers again"
        )
    return info


# --- reading the registry -----------------------------------------------------------------------


@speaks_to_mlflow
def get_version(name: str, version: str, settings: Settings | None = None) -> ModelVersionInfo:
    mlflow_client = client(settings)
    try:
        mv = mlflow_client.get_model_version(name, str(version))
    except Exception as exc:  # noqa: BLE001 - only "absent" becomes ModelNotFound; an outage re-raises
        if is_absent(exc):
            raise ModelNotFound(f"model {name!r} has no version {version!r}") from exc
        raise
    return _info(mv, mlflow_client)


@speaks_to_mlflow
def get_alias(name: str, alias: str, settings: Settings | None = None) -> ModelVersionInfo | None:
    """The version an alias points at, or None when the alias (or the model) does not exist.
    MLflow unreachable or failing raises RegistryUnavailable: an outage never reads as "no champion"."""
    mlflow_client = client(settings)
    try:
        mv = mlflow_client.get_model_version_by_alias(name, alias)
    except Exception as exc:  # noqa: BLE001 - only "absent" is None; an outage re-raises
        if is_absent(exc):
            return None
        raise
    return _info(mv, mlflow_client)


def get_champion(name: str, settings: Settings | None = None) -> ModelVersionInfo:
    info = get_alias(name, CHAMPION, settings)
    if info is None:
        raise NoChampion(f"model {name!r} has no champion yet")
    return info


@speaks_to_mlflow
def model_exists(name: str, settings: Settings | None = None) -> bool:
    try:
        client(settings).get_registered_model(name)
    except Exception as exc:  # noqa: BLE001 - only "absent" is False; an outage re-raises
        if is_absent(exc):
            return False
        raise
    return True


@speaks_to_mlflow
def list_versions(name: str, settings: Settings | None = None) -> list[ModelVersionInfo]:
    mlflow_client = client(settings)
    versions = mlflow_client.search_model_versions(f"name = '{name}'")
    return sorted((_info(mv, mlflow_client, with_metrics=False) for mv in versions), key=lambda i: int(i.version))


def _artifact_cache(settings: Settings | None) -> Path:
    return (settings or get_settings()).home / "cache" / "mlflow-artifacts"


def _cache_limits(settings: Settings | None) -> CacheLimits:
    settings = settings or get_settings()
    return CacheLimits(int(settings.artifact_cache_max_mb * 1024 * 1024), settings.artifact_cache_keep_days)


def prune_artifact_cache(max_mb: float | None = None, keep_days: float | None = None, dry_run: bool = False,
                         settings: Settings | None = None) -> PruneResult:
    """Prune this machine's copies of registered versions' artifacts (default limits: the settings)."""
    limits = _cache_limits(settings)
    limits = CacheLimits(limits.max_bytes if max_mb is None else int(max_mb * 1024 * 1024),
                         limits.keep_days if keep_days is None else keep_days)
    return prune(_artifact_cache(settings), limits, dry_run=dry_run)


@speaks_to_mlflow
def load_model(info: ModelVersionInfo, settings: Settings | None = None) -> Any:
    """The version's fitted pipeline, from this machine's copy of its artifacts (fetched once: a registered
    version's model never changes; its source names one logged model)."""
    import mlflow
    import mlflow.artifacts

    activate(settings)
    return use_once_fetched(
        _artifact_cache(settings), f"model {info.source or info.model_uri}",
        lambda folder: Path(mlflow.artifacts.download_artifacts(artifact_uri=info.model_uri, dst_path=str(folder))),
        lambda local: mlflow.sklearn.load_model(str(local)), _cache_limits(settings),
    )


@speaks_to_mlflow
def _read_artifact(run_id: str, artifact: str, read, settings: Settings | None = None):
    """Read one run artifact with ``read(path)`` from this machine's copy, fetched on first use: the run
    artifacts read here (reference, holdout, spec, importance) are written once, at registration."""
    import mlflow.artifacts

    activate(settings)
    return use_once_fetched(
        _artifact_cache(settings), f"run {run_id} {artifact}",
        lambda folder: Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact, dst_path=str(folder))),
        read, _cache_limits(settings),
    )


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


@speaks_to_mlflow
def set_alias(name: str, alias: str, version: str, settings: Settings | None = None) -> None:
    client(settings).set_registered_model_alias(name, alias, str(version))


@speaks_to_mlflow
def delete_alias(name: str, alias: str, settings: Settings | None = None) -> None:
    client(settings).delete_registered_model_alias(name, alias)


@speaks_to_mlflow
def set_version_tags(name: str, version: str, tags: dict[str, str], settings: Settings | None = None) -> None:
    mlflow_client = client(settings)
    for key, value in tags.items():
        mlflow_client.set_model_version_tag(name, str(version), key, value)


@speaks_to_mlflow
def set_model_tags(name: str, tags: dict[str, str], settings: Settings | None = None) -> None:
    mlflow_client = client(settings)
    for key, value in tags.items():
        mlflow_client.set_registered_model_tag(name, key, value)


@speaks_to_mlflow
def get_model_tags(name: str, settings: Settings | None = None) -> dict[str, str]:
    try:
        return dict(client(settings).get_registered_model(name).tags or {})
    except Exception as exc:  # noqa: BLE001 - only "absent" becomes ModelNotFound; an outage re-raises
        if is_absent(exc):
            raise ModelNotFound(f"no registered model {name!r}") from exc
        raise


@speaks_to_mlflow
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


@speaks_to_mlflow
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


@speaks_to_mlflow
def delete_model_tags(name: str, keys: list[str], settings: Settings | None = None) -> None:
    mlflow_client = client(settings)
    for key in keys:
        mlflow_client.delete_registered_model_tag(name, key)


# --- resolving and loading versions ---------------------------------------------------------------


@speaks_to_mlflow
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
    return require_complete(info)


@speaks_to_mlflow
def load_pyfunc(info: ModelVersionInfo, settings: Settings | None = None) -> Any:
    """The version as a server loads it (``models:/<name>/<version>``, pyfunc flavour)."""
    import mlflow.pyfunc

    activate(settings)
    return mlflow.pyfunc.load_model(info.model_uri)


@speaks_to_mlflow
def load_input_example(info: ModelVersionInfo, settings: Settings | None = None) -> pd.DataFrame | None:
    """The input example logged with the model (raw model input columns), or None if none was logged."""
    from mlflow.models import Model

    activate(settings)
    example = Model.load(info.model_uri).load_input_example(info.model_uri)
    return None if example is None else pd.DataFrame(example)


# --- registering a version (what a registration logs and in which order: leanops.registration) --------


@speaks_to_mlflow
def ensure_registered_model(name: str, description: str = "", settings: Settings | None = None) -> None:
    """Create the registered model unless it exists (a concurrent creator wins harmlessly)."""
    mlflow_client = client(settings)
    try:
        mlflow_client.get_registered_model(name)
    except Exception as exc:  # noqa: BLE001 - absent: create it; anything else is the caller's failure
        if not is_absent(exc):
            raise
        try:
            mlflow_client.create_registered_model(name, description=description)
        except Exception:  # noqa: BLE001 - a concurrent creator won: it exists now (re-read, or fail)
            mlflow_client.get_registered_model(name)


@speaks_to_mlflow
def create_version(name: str, source: str, run_id: str, tags: dict[str, str], model_id: str | None, run_link: str,
                   settings: Settings | None = None) -> str:
    """A new version of ``name`` holding the logged model ``source``; returns its number."""
    mv = client(settings).create_model_version(name, source=source, run_id=run_id, tags=tags, model_id=model_id, run_link=run_link)
    return str(mv.version)


@speaks_to_mlflow
def delete_version(name: str, version: str, settings: Settings | None = None) -> None:
    """Delete one version (MLflow drops its aliases with it)."""
    client(settings).delete_model_version(name, str(version))
