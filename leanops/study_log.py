"""A tuning study's record in MLflow: one run per study (experiment ``leanops/<model>``).

Tags ``leanops.study_name`` (how a resumed study finds its run again) and the best parameters as
``leanops.best.<name>`` (tags: params are immutable and a resumed study may find better ones); params
once: metric, direction, search space; metrics with step = trials so far, and every completed trial's
value (only trials not logged before); artifacts: trials.csv, best_params.json, report.html
(self-contained, readable offline).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from leanops import tracking
from leanops.mlflow_access import run_url
from leanops.results import TuningResult
from leanops.settings import Settings
from leanops.spec import Spec

STUDY_TAG = "leanops.study_name"
TRIALS_LOGGED_TAG = "leanops.trials_logged"
TRIALS_ARTIFACT = "tuning/trials.csv"
BEST_PARAMS_ARTIFACT = "tuning/best_params.json"
TUNING_REPORT_ARTIFACT = "tuning/report.html"


def _search_space_params(spec: Spec) -> dict[str, str]:
    params = {}
    for name, dim in sorted(spec.tuning.search_space.items()):
        if dim.type == "categorical":
            params[f"space.{name}"] = f"categorical{dim.choices}"
        else:
            params[f"space.{name}"] = f"{dim.type}[{dim.low}, {dim.high}]{' log' if dim.log else ''}"
    return params


def _study_run(result: TuningResult, spec: Spec, settings: Settings | None) -> tuple[tracking.StartedRun, int]:
    """The study's run (reopened when a resumed study logs again) and the last trial number it holds."""
    experiment = f"leanops/{spec.name}"
    found = tracking.find_runs(experiment, f"tags.`{STUDY_TAG}` = '{result.study_name}'", max_results=1, settings=settings)
    if found:
        tracking.reopen_run(found[0].run_id, settings=settings)
        run = tracking.StartedRun(found[0].run_id, found[0].experiment_id, run_url(found[0].run_id, found[0].experiment_id, settings))
        return run, int(found[0].tags.get(TRIALS_LOGGED_TAG, -1))
    run = tracking.start_run(
        experiment, f"tune-{result.study_name}", {STUDY_TAG: result.study_name, "leanops.model": spec.name}, settings=settings
    )
    tracking.log_params(run.run_id, {
        "study_name": result.study_name,
        "metric": result.metric,
        "direction": result.direction,
        "n_estimators_cap": spec.tuning.n_estimators,
        "early_stopping_rounds": spec.tuning.early_stopping_rounds,
        **_search_space_params(spec),
    }, settings=settings)
    return run, -1


def log_study(
    result: TuningResult, spec: Spec, *, tags: dict[str, str] | None = None, settings: Settings | None = None
) -> TuningResult:
    """Log a summarized study to MLflow; return the result with ``mlflow_run_id`` and ``report_uris`` set.

    Idempotent per study: logging a resumed study again updates the same run.
    """
    run, already_logged = _study_run(result, spec, settings)
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
    metrics = [(k, float(v), step) for k, v in summary.items()]
    last_number = already_logged
    if result.trials is not None and not result.trials.empty:
        complete = result.trials[(result.trials["state"] == "COMPLETE") & (result.trials["number"] > already_logged)]
        metrics += [(f"trial_{result.metric}", float(v), int(n)) for n, v in zip(complete["number"], complete["value"])]
        last_number = max(already_logged, int(result.trials["number"].max()))
    run_tags = {
        **(tags or {}),
        "leanops.storage": result.storage,
        TRIALS_LOGGED_TAG: str(last_number),
        **{f"leanops.best.{k}": str(v) for k, v in sorted(result.best_params.items())},
    }
    tracking.log_metrics(run.run_id, metrics, tags=run_tags, settings=settings)

    uris = {"best_params": f"runs:/{run.run_id}/{BEST_PARAMS_ARTIFACT}"}
    tracking.log_dict(run.run_id, _jsonable(result.best_params), BEST_PARAMS_ARTIFACT, settings=settings)
    if result.trials is not None:
        tracking.log_text(run.run_id, result.trials.to_csv(index=False), TRIALS_ARTIFACT, settings=settings)
        uris["trials"] = f"runs:/{run.run_id}/{TRIALS_ARTIFACT}"
    if result.report_html:
        tracking.log_text(run.run_id, result.report_html, TUNING_REPORT_ARTIFACT, settings=settings)
        uris["report"] = f"runs:/{run.run_id}/{TUNING_REPORT_ARTIFACT}"
    tracking.end_run(run.run_id, settings=settings)
    uris["run"] = run.url
    return dataclasses.replace(result, mlflow_run_id=run.run_id, report_uris=uris)


def _jsonable(params: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(params, default=lambda v: v.item() if hasattr(v, "item") else str(v)))
