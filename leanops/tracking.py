"""MLflow experiments and runs: the adapter that creates, fills, finishes and finds runs. What a run
holds is decided by its lifecycle stage (``leanops.registration``, ``leanops.drift_log``,
``leanops.study_log``, ``leanops.aliases``); this module only speaks MLflow.

Every function turns MLflow being unreachable into RegistryUnavailable (``leanops.mlflow_access``).
"""

from __future__ import annotations

import time
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, NamedTuple

import pandas as pd

from leanops.mlflow_access import activate, client, experiment_id, run_url, speaks_to_mlflow
from leanops.settings import Settings

# skops refuses unknown types on load; these are the ones our pipelines contain beyond scikit-learn's
# (the feature steps' pandas and standard-library callables: leanops.features.FEATURE_TRUSTED_TYPES).
# None is ours: a logged model loads without leanops. Versions logged before trusted
# leanops.features.SpecFeatures; each version's MLmodel keeps its own list, so they still load.
XGBOOST_TYPES = ["xgboost.sklearn.XGBClassifier", "xgboost.sklearn.XGBRegressor", "xgboost.core.Booster"]
_BATCH = 1000  # MLflow's log_batch limit on metrics per call
_EXPERIMENTS_PER_SEARCH = 100  # experiment ids per search_runs request, to keep its query bounded


class StartedRun(NamedTuple):
    run_id: str
    experiment_id: str
    url: str


class FoundRun(NamedTuple):
    run_id: str
    experiment_id: str
    tags: dict[str, str]
    metrics: dict[str, float]


class LoggedModel(NamedTuple):
    model_uri: str
    model_id: str | None


@speaks_to_mlflow
def start_run(experiment: str, run_name: str, tags: dict[str, str], start_time_ms: int | None = None,
              settings: Settings | None = None) -> StartedRun:
    """A new run (status RUNNING) in the named experiment, created on first use."""
    mlflow_client = client(settings)
    exp_id = experiment_id(mlflow_client, experiment)
    run_id = mlflow_client.create_run(exp_id, start_time=start_time_ms, tags=tags, run_name=run_name).info.run_id
    return StartedRun(run_id, exp_id, run_url(run_id, exp_id, settings))


@speaks_to_mlflow
def end_run(run_id: str, failed: bool = False, settings: Settings | None = None) -> None:
    client(settings).set_terminated(run_id, "FAILED" if failed else "FINISHED")


@speaks_to_mlflow
def reopen_run(run_id: str, settings: Settings | None = None) -> None:
    client(settings).update_run(run_id, status="RUNNING")


@speaks_to_mlflow
def log_params(run_id: str, params: dict[str, Any], settings: Settings | None = None) -> None:
    from mlflow.entities import Param

    client(settings).log_batch(run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()])


@speaks_to_mlflow
def log_metrics(run_id: str, metrics: Iterable[tuple[str, float, int]], tags: dict[str, str] | None = None,
                settings: Settings | None = None) -> None:
    """(name, value, step) triples in batches MLflow accepts; ``tags`` go with the first batch."""
    from mlflow.entities import Metric, RunTag

    mlflow_client = client(settings)
    now = int(time.time() * 1000)
    metrics = [Metric(k, float(v), now, int(step)) for k, v, step in metrics]
    for start in range(0, max(len(metrics), 1), _BATCH):
        mlflow_client.log_batch(
            run_id, metrics=metrics[start : start + _BATCH],
            tags=[RunTag(k, v) for k, v in (tags or {}).items()] if start == 0 else [],
        )


@speaks_to_mlflow
def set_run_tag(run_id: str, key: str, value: str, settings: Settings | None = None) -> None:
    client(settings).set_tag(run_id, key, value)


@speaks_to_mlflow
def log_text(run_id: str, text: str, artifact: str, settings: Settings | None = None) -> None:
    client(settings).log_text(run_id, text, artifact)


@speaks_to_mlflow
def log_dict(run_id: str, content: dict, artifact: str, settings: Settings | None = None) -> None:
    client(settings).log_dict(run_id, content, artifact)


@speaks_to_mlflow
def log_folder(run_id: str, folder: Path, settings: Settings | None = None) -> None:
    """Every file under ``folder`` as the run's artifacts, at the same relative paths."""
    client(settings).log_artifacts(run_id, str(folder))


def _all_pages(fetch: Callable[[str | None], Any]) -> Iterator[Any]:
    """Every item of a paged MLflow search, page after page: ``fetch(token)`` returns a PagedList."""
    token = None
    while True:
        page = fetch(token)
        yield from page
        token = page.token
        if not token:
            return


class DatedRun(NamedTuple):
    run_id: str
    experiment: str
    start_time_ms: int
    status: str


@speaks_to_mlflow
def runs_started_before(experiment_like: str, cutoff_ms: int, settings: Settings | None = None) -> list[DatedRun]:
    """Every run (not yet deleted) started before ``cutoff_ms`` in the experiments whose names match the
    SQL LIKE pattern ``experiment_like``, all pages of both searches."""
    mlflow_client = client(settings)
    experiments = {
        e.experiment_id: e.name
        for e in _all_pages(lambda token: mlflow_client.search_experiments(filter_string=f"name LIKE '{experiment_like}'", page_token=token))
    }
    ids = sorted(experiments)
    return [
        DatedRun(r.info.run_id, experiments[r.info.experiment_id], r.info.start_time, r.info.status)
        for start in range(0, len(ids), _EXPERIMENTS_PER_SEARCH)
        for r in _all_pages(lambda token, chunk=ids[start : start + _EXPERIMENTS_PER_SEARCH]: mlflow_client.search_runs(
            chunk, filter_string=f"attributes.start_time < {int(cutoff_ms)}", max_results=1000, page_token=token))
    ]


@speaks_to_mlflow
def delete_run(run_id: str, settings: Settings | None = None) -> None:
    """The run's artifacts, then the run itself. MLflow's API only soft-deletes a run: its rows stay in the
    tracking database until ``mlflow gc`` removes them. Artifacts go first, so an interrupted delete
    leaves a run that a second call finds and finishes."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    activate(settings)  # a proxied (mlflow-artifacts:) location resolves against the tracking URI
    mlflow_client = client(settings)
    get_artifact_repository(mlflow_client.get_run(run_id).info.artifact_uri).delete_artifacts()
    mlflow_client.delete_run(run_id)


def _pip_requirements() -> list[str]:
    # Inferring requirements costs ~2 s per log_model; the pipeline needs exactly these.
    from importlib import metadata

    return [f"{pkg}=={metadata.version(pkg)}" for pkg in ("mlflow", "scikit-learn", "xgboost", "pandas", "numpy", "skops")]


def _sklearn_model_arguments(example: pd.DataFrame, outputs: Any, predict_fn: str, metadata: dict[str, Any] | None) -> dict[str, Any]:
    from mlflow.models import infer_signature

    from leanops.features import FEATURE_TRUSTED_TYPES

    return {
        "signature": infer_signature(example, outputs), "input_example": example, "pip_requirements": _pip_requirements(),
        "skops_trusted_types": [*XGBOOST_TYPES, *FEATURE_TRUSTED_TYPES], "pyfunc_predict_fn": predict_fn, "metadata": metadata,
    }


@speaks_to_mlflow
def log_sklearn_model(run_id: str, model: Any, example: pd.DataFrame, outputs: Any, predict_fn: str,
                      metadata: dict[str, Any] | None = None, settings: Settings | None = None) -> LoggedModel:
    """The fitted pipeline as the run's ``model`` (skops), with its signature, input example and ``metadata``
    (in its MLmodel file: what the outputs mean, for whoever loads it without leanops)."""
    import mlflow

    activate(settings)
    with mlflow.start_run(run_id=run_id):
        logged = mlflow.sklearn.log_model(model, name="model", **_sklearn_model_arguments(example, outputs, predict_fn, metadata))
    return LoggedModel(logged.model_uri, logged.model_id)


def save_sklearn_model(folder: Path, model: Any, example: pd.DataFrame, outputs: Any, predict_fn: str,
                       metadata: dict[str, Any] | None = None) -> Any:
    """The same model folder ``log_sklearn_model`` logs, written locally (no tracking server), loaded back
    as pyfunc: what benchmarks and tests compare the endpoint's paths against."""
    import mlflow.pyfunc
    import mlflow.sklearn

    mlflow.sklearn.save_model(model, str(folder), **_sklearn_model_arguments(example, outputs, predict_fn, metadata))
    return mlflow.pyfunc.load_model(str(folder))


@speaks_to_mlflow
def find_runs(experiment: str, filter_string: str = "", order_by: list[str] | None = None,
              max_results: int | None = None, settings: Settings | None = None) -> list[FoundRun]:
    """Runs of the named experiment matching ``filter_string`` (all pages unless ``max_results``)."""
    mlflow_client = client(settings)
    found_experiment = mlflow_client.get_experiment_by_name(experiment)
    if found_experiment is None:
        return []
    runs = _all_pages(lambda token: mlflow_client.search_runs(
        [found_experiment.experiment_id], filter_string=filter_string, order_by=order_by,
        max_results=min(max_results or 1000, 1000), page_token=token,
    ))
    # islice stops at max_results without asking for the next page.
    return [FoundRun(run.info.run_id, run.info.experiment_id, dict(run.data.tags), dict(run.data.metrics))
            for run in islice(runs, max_results)]
