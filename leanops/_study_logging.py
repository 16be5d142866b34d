"""TEMPORARY home of :func:`log_study`: MLflow logging of a tuning study.

MLflow belongs to ``leanops/registry.py`` alone; this module exists only because registry.py was
being written at the same time. Move ``log_study`` (and its constants) into registry.py as is
(it reuses nothing but ``registry.client`` / ``registry.run_url``) and delete this file.

What is logged, in one run per study (experiment ``leanops/<model>``, the retrain runs' experiment):

- tags: ``leanops.study_name`` (how a resumed study finds its run again), the storage (redacted),
  the best parameters as ``leanops.best.<name>`` (tags, because MLflow params are immutable and a
  resumed study may find better ones), plus any lineage tags given;
- params (once, when the run is created): what defines the study: metric, direction, search space;
- metrics, in batches, with step = number of trials so far: best and default validation score,
  improvement, trial counts; and the value of every completed trial as ``trial_<metric>`` with
  step = trial number (only trials not logged before, so a resume adds points, not duplicates);
- artifacts: ``tuning/trials.csv``, ``tuning/best_params.json`` and ``tuning/report.html``
  (self-contained, readable offline).
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

from leanops.results import TuningResult
from leanops.settings import Settings
from leanops.spec import Spec

STUDY_TAG = "leanops.study_name"
TRIALS_LOGGED_TAG = "leanops.trials_logged"
TRIALS_ARTIFACT = "tuning/trials.csv"
BEST_PARAMS_ARTIFACT = "tuning/best_params.json"
REPORT_ARTIFACT = "tuning/report.html"
_BATCH = 1000  # MLflow's log_batch limit on metrics per call


def _search_space_params(spec: Spec) -> dict[str, str]:
    params = {}
    for name, dim in sorted(spec.tuning.search_space.items()):
        if dim.type == "categorical":
            params[f"space.{name}"] = f"categorical{dim.choices}"
        else:
            params[f"space.{name}"] = f"{dim.type}[{dim.low}, {dim.high}]{' log' if dim.log else ''}"
    return params


def log_study(
    result: TuningResult, spec: Spec, *, tags: dict[str, str] | None = None, settings: Settings | None = None
) -> TuningResult:
    """Log a summarized study to MLflow; return the result with ``mlflow_run_id`` and ``report_uris`` set.

    Idempotent per study: logging a resumed study again updates the same run.
    """
    from mlflow.entities import Metric, RunTag

    from leanops.registry import client, run_url

    mlflow_client = client(settings)
    experiment_name = f"leanops/{spec.name}"
    experiment = mlflow_client.get_experiment_by_name(experiment_name)
    experiment_id = experiment.experiment_id if experiment else mlflow_client.create_experiment(experiment_name)
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
        mlflow_client.log_text(run_id, result.report_html, REPORT_ARTIFACT)
        uris["report"] = f"runs:/{run_id}/{REPORT_ARTIFACT}"
    mlflow_client.set_terminated(run_id, "FINISHED")
    uris["run"] = run_url(run_id, experiment_id, settings)
    return dataclasses.replace(result, mlflow_run_id=run_id, report_uris=uris)


def _param(key: str, value: Any):
    from mlflow.entities import Param

    return Param(key, str(value)[:6000])


def _jsonable(params: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(params, default=lambda v: v.item() if hasattr(v, "item") else str(v)))
