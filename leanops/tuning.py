"""Hyper-parameter tuning with Optuna: the only Optuna user.

The tuned model is the model the project trains (``modeling.build_model``: spec features ->
ordinal encoding -> XGBoost ``hist``). Its leading steps do not depend on hyper-parameters, so
they are fitted once on the training split and every trial fits only the booster, with early
stopping on the validation split. The objective is the spec's primary metric on the validation
split, computed by ``modeling.score``; the holdout is never seen here.

A study lives in storage (``settings.resolved_optuna_storage``). Its name is derived from the
model, the data fingerprint and everything that defines the objective (:func:`study_name_for`),
so a rerun resumes it and only runs what is left of the budget. Workers (threads, processes,
Dask task runs) share one study through that storage::

    plan = prepare_study(spec, study_name=name, storage=url, n_workers=2)
    run_trials(..., n_trials=plan.shares[i], worker_index=i)    # once per worker, concurrently
    result = summarize_study(spec, study_name=name, storage=url)

:func:`tune` does the three steps in one process.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from leanops.errors import TuningFailed
from leanops.progress import Progress, quiet
from leanops.results import ParamsChoice, StudyPlan, TrialBatchResult, TuningResult
from leanops.spec import SearchDim, Spec

if TYPE_CHECKING:
    import optuna

TUNING_VERSION = "1"  # bump when the objective changes meaning: starts new studies

BuildModel = Callable[[Spec, dict[str, Any]], Any]
"""``(spec, params) -> unfitted estimator``, the contract of an injected model builder.

The estimator is an XGBoost scikit-learn model (``XGBClassifier`` / ``XGBRegressor``) or a
scikit-learn ``Pipeline`` whose last step is one. The leading pipeline steps take the raw columns
of ``X_train`` and must not depend on ``params``: they are fitted once, on the training split.
The last step gets ``params`` (XGBoost names) and, from tuning, ``n_jobs``,
``early_stopping_rounds``, ``eval_metric`` and ``callbacks``; it is fitted per trial as
``fit(X, y, eval_set=[(X_valid, y_valid)], verbose=False)``. ``modeling.build_model`` qualifies.
"""

DEFAULT_TRIAL_ATTR = "leanops.default"
WORKER_ATTR = "leanops.worker"
ERROR_ATTR = "leanops.error"
BEST_ITERATION_ATTR = "best_iteration"
REPORT_EVERY_ROUNDS = 5  # intermediate values for the pruner: often enough to stop early, few storage writes

# XGBoost's own defaults, for searched parameters the spec leaves unset: the enqueued
# "default" trial must be the untuned model, not a sampled one.
_XGBOOST_DEFAULTS: dict[str, Any] = {
    "max_depth": 6,
    "learning_rate": 0.3,
    "min_child_weight": 1.0,
    "subsample": 1.0,
    "colsample_bytree": 1.0,
    "colsample_bylevel": 1.0,
    "colsample_bynode": 1.0,
    "reg_lambda": 1.0,
    "reg_alpha": 0.0,
    "gamma": 0.0,
    "max_bin": 256,
    "max_delta_step": 0.0,
}


# --- names and storage ---------------------------------------------------------------------------


def objective_hash(spec: Spec) -> str:
    """Hash of everything that makes trial values comparable: search space, metric, fixed params, recipe."""
    from leanops.modeling import MODELING_VERSION, xgb_params

    searched = set(spec.tuning.search_space)
    definition = {
        "search_space": {k: d.model_dump(mode="json") for k, d in sorted(spec.tuning.search_space.items())},
        "metric": spec.metric.primary,
        "task": spec.task,
        "n_estimators": spec.tuning.n_estimators,
        "early_stopping_rounds": spec.tuning.early_stopping_rounds,
        "fixed_params": {k: v for k, v in xgb_params(spec).items() if k not in searched and k != "n_estimators"},
        "versions": [MODELING_VERSION, TUNING_VERSION],
    }
    canonical = json.dumps(definition, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:8]


def study_name_for(spec: Spec, data_fingerprint: str) -> str:
    """``<model>-<data fingerprint>-<objective hash>``: same data and objective, same study (a rerun resumes it)."""
    if not data_fingerprint:
        raise ValueError("a study name needs the data fingerprint of the tuning data")
    return f"{spec.name}-{data_fingerprint[:12]}-{objective_hash(spec)}"


def redact_storage(storage: str) -> str:
    """The storage URL without its password, for logs, results and tags."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", storage)


_memory_storage: Any = None
_memory_lock = threading.Lock()


def resolve_storage(storage: str | None) -> str:
    if storage is not None:
        return storage
    from leanops.settings import get_settings

    # A secret in settings (a database URL may carry a password): revealed only to open the storage.
    return get_settings().resolved_optuna_storage.get_secret_value()


def open_storage(storage: str | None = None) -> "optuna.storages.BaseStorage":
    """``journal:<path>`` (a file shared by processes on one machine or a shared disk), ``memory``
    (this process only) or a database URL such as ``postgresql://...``. None: the settings' storage."""
    import optuna

    url = resolve_storage(storage)
    if url == "memory":
        global _memory_storage
        with _memory_lock:
            # One per process, created on first use, so a rerun in the same process resumes.
            if _memory_storage is None:
                _memory_storage = optuna.storages.InMemoryStorage()
            return _memory_storage
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        raw = url.removeprefix("journal:")
        if not raw.strip():
            raise ValueError("Optuna storage 'journal:' needs a file path, e.g. journal:/var/lib/leanops/optuna.log")
        path = Path(raw).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    if "://" in url:
        # The heartbeat lets a later run mark trials of a crashed worker as failed.
        return optuna.storages.RDBStorage(url, heartbeat_interval=60, grace_period=180)
    raise ValueError(
        f"unknown Optuna storage {redact_storage(url)!r}: use 'journal:<path>', 'memory' or a database URL (postgresql://...)"
    )


def _load_study(spec: Spec, study_name: str, storage: str | None, worker_index: int = 0) -> "optuna.Study":
    import optuna

    try:
        return optuna.load_study(
            study_name=study_name,
            storage=open_storage(storage),
            sampler=_sampler(spec, worker_index),
            pruner=_pruner(spec),
        )
    except KeyError as exc:
        raise TuningFailed(
            f"no study {study_name!r} in {redact_storage(resolve_storage(storage))}: call prepare_study first"
        ) from exc


def _sampler(spec: Spec, worker_index: int) -> "optuna.samplers.BaseSampler":
    import optuna

    # Each worker gets its own seed: equal seeds would make concurrent workers propose the same points.
    # constant_liar keeps concurrent workers away from the points other workers are evaluating.
    startup = max(3, min(10, spec.tuning.n_trials // 3))
    return optuna.samplers.TPESampler(seed=spec.split.seed + worker_index, n_startup_trials=startup, constant_liar=True)


def _pruner(spec: Spec) -> "optuna.pruners.BasePruner":
    import optuna

    # Low learning rates start slowly: no verdict during the first quarter of the rounds (at most 50).
    warmup = min(50, spec.tuning.n_estimators // 4)
    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=warmup)


# --- the objective -------------------------------------------------------------------------------

_EVAL_METRICS = {
    # primary metric -> XGBoost evaluation metric for early stopping and pruning, per task: the metric
    # itself where XGBoost has it, else one on the same scale and in the same direction.
    "binary": {"roc_auc": "auc", "pr_auc": "aucpr", "log_loss": "logloss", "accuracy": "error"},
    "multiclass": {"log_loss": "mlogloss", "accuracy": "merror", "macro_f1": "merror", "roc_auc_ovr": "auc"},
    "regression": {"rmse": "rmse", "mae": "mae", "r2": "rmse"},
}


def eval_metric_for(spec: Spec) -> str:
    return _EVAL_METRICS[spec.task][spec.metric.primary]


def _to_primary(spec: Spec, y_valid: np.ndarray) -> Callable[[float], float]:
    """Map XGBoost's evaluation value to the primary metric's scale and direction (what the pruner compares)."""
    metric, eval_metric = spec.metric.primary, eval_metric_for(spec)
    if eval_metric in ("error", "merror"):
        # 1 - error is the accuracy: the metric itself, or for macro F1 the nearest in scale and direction.
        return lambda error: 1.0 - error
    if metric == "r2":
        variance = float(np.var(y_valid))
        return lambda rmse: 1.0 - rmse * rmse / variance
    return lambda value: value


@functools.cache
def _pruning_callback_class() -> type:
    import optuna
    import xgboost

    class ReportAndPrune(xgboost.callback.TrainingCallback):
        """Report the validation metric every few rounds; stop the trial when the pruner says it is hopeless."""

        def __init__(self, trial: optuna.Trial, eval_metric: str, to_primary: Callable[[float], float]):
            super().__init__()
            self.trial, self.eval_metric, self.to_primary = trial, eval_metric, to_primary

        def after_iteration(self, model: Any, epoch: int, evals_log: dict) -> bool:
            if epoch % REPORT_EVERY_ROUNDS:
                return False
            history = evals_log["validation_0"][self.eval_metric]
            self.trial.report(self.to_primary(float(history[-1])), step=epoch)
            if self.trial.should_prune():
                raise optuna.TrialPruned(f"pruned at boosting round {epoch}")
            return False

    return ReportAndPrune


@dataclass(frozen=True)
class _TrialData:
    X_train: Any
    y_train: np.ndarray
    X_valid: Any
    y_valid: np.ndarray
    build_model: BuildModel


def _default_builder() -> BuildModel:
    from leanops.modeling import build_model

    return lambda spec, params: build_model(spec, params)


def _final_estimator(model: Any) -> Any:
    from sklearn.pipeline import Pipeline

    estimator = model.steps[-1][1] if isinstance(model, Pipeline) else model
    if not hasattr(estimator, "get_xgb_params"):
        raise TypeError(
            "build_model must return an XGBoost scikit-learn model or a Pipeline ending in one, "
            f"got {type(estimator).__name__}"
        )
    return estimator


def _prepare(X_train, y_train, X_valid, y_valid, spec: Spec, build_model: BuildModel | None) -> _TrialData:
    from sklearn.pipeline import Pipeline

    problems = []
    if len(X_train) != len(y_train):
        problems.append(f"X_train has {len(X_train)} rows but y_train {len(y_train)}")
    if len(X_valid) != len(y_valid):
        problems.append(f"X_valid has {len(X_valid)} rows but y_valid {len(y_valid)}")
    if len(X_train) == 0 or len(X_valid) == 0:
        problems.append(f"tuning needs training and validation rows (got {len(X_train)} and {len(X_valid)})")
    if build_model is None:
        from leanops.features import model_input_columns

        for name, frame in (("X_train", X_train), ("X_valid", X_valid)):
            missing = [c for c in model_input_columns(spec) if c not in frame.columns]
            if missing:
                problems.append(f"{name} lacks the model's input columns {missing}")
    y_valid_arr = np.asarray(y_valid)
    if spec.task == "multiclass":
        absent = sorted(set(range(len(spec.target.classes))) - set(np.unique(np.asarray(y_train)).tolist()))
        if absent:
            problems.append(f"the training split lacks the class(es) {[spec.target.classes[i] for i in absent]}")
    if spec.is_classifier and len(np.unique(y_valid_arr)) < 2:
        problems.append("the validation split holds a single class: the metric is undefined")
    if spec.metric.primary == "r2" and len(y_valid_arr) and float(np.var(y_valid_arr)) == 0.0:
        problems.append("the validation target is constant: r2 is undefined")
    if problems:
        raise ValueError("cannot tune on these data: " + "; ".join(problems))

    builder = build_model or _default_builder()
    probe = builder(spec, {})
    _final_estimator(probe)
    if isinstance(probe, Pipeline) and len(probe.steps) > 1:
        leading = Pipeline(probe.steps[:-1])
        X_train_ready = leading.fit_transform(X_train, y_train)
        X_valid_ready = leading.transform(X_valid)
    else:
        X_train_ready, X_valid_ready = X_train, X_valid
    return _TrialData(X_train_ready, np.asarray(y_train), X_valid_ready, y_valid_arr, builder)


def _suggest(trial: "optuna.Trial", name: str, dim: SearchDim) -> Any:
    if dim.type == "int":
        return trial.suggest_int(name, int(dim.low), int(dim.high), log=dim.log)
    if dim.type == "float":
        return trial.suggest_float(name, float(dim.low), float(dim.high), log=dim.log)
    return trial.suggest_categorical(name, list(dim.choices))


def _objective(data: _TrialData, spec: Spec, threads: int, worker_index: int) -> Callable[["optuna.Trial"], float]:
    import optuna

    from leanops.modeling import predict_scores, score

    eval_metric = eval_metric_for(spec)
    to_primary = _to_primary(spec, data.y_valid)
    callback_class = _pruning_callback_class()

    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr(WORKER_ATTR, worker_index)
        params = {name: _suggest(trial, name, dim) for name, dim in spec.tuning.search_space.items()}
        try:
            estimator = _final_estimator(data.build_model(spec, {**params, "n_estimators": spec.tuning.n_estimators}))
            estimator.set_params(
                n_jobs=threads,
                early_stopping_rounds=spec.tuning.early_stopping_rounds,
                eval_metric=eval_metric,
                callbacks=[callback_class(trial, eval_metric, to_primary)],
            )
            started = time.perf_counter()
            estimator.fit(data.X_train, data.y_train, eval_set=[(data.X_valid, data.y_valid)], verbose=False)
            trial.set_user_attr("fit_seconds", round(time.perf_counter() - started, 3))
            trial.set_user_attr(BEST_ITERATION_ATTR, int(estimator.best_iteration))
            # Predictions use the best iteration (early stopping), scored as everywhere else in the project.
            return score(data.y_valid, predict_scores(estimator, data.X_valid, spec), spec)[spec.metric.primary]
        except optuna.TrialPruned:
            raise
        except Exception as exc:
            # The study counts the trial as failed and goes on; the reason stays with the trial.
            trial.set_user_attr(ERROR_ATTR, f"{type(exc).__name__}: {exc}"[:500])
            raise

    return objective


# --- the three steps -----------------------------------------------------------------------------


def _state_counts(study: "optuna.Study") -> dict[str, int]:
    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    return counts


def _finished(counts: dict[str, int]) -> int:
    return counts.get("COMPLETE", 0) + counts.get("PRUNED", 0) + counts.get("FAIL", 0)


def default_trial_params(spec: Spec) -> dict[str, Any]:
    """The untuned model's values of the searched parameters (spec, then modeling's, then XGBoost's defaults)."""
    from leanops.modeling import xgb_params

    untuned = xgb_params(spec)
    params = {}
    for name in spec.tuning.search_space:
        if name in untuned:
            params[name] = untuned[name]
        elif name in _XGBOOST_DEFAULTS:
            params[name] = _XGBOOST_DEFAULTS[name]
    return params


def prepare_study(
    spec: Spec, *, study_name: str, storage: str | None = None, n_trials: int | None = None, n_workers: int = 1
) -> StudyPlan:
    """Create the study (or find it) and split what is left of the budget among ``n_workers``.

    ``n_trials`` (default ``spec.tuning.n_trials``) is the study's target of finished trials
    (complete, pruned or failed), so a rerun only runs the rest. A new study starts with one
    trial of the untuned parameters: the "default" score to compare with, and a known-good start.
    """
    import optuna

    if n_workers < 1:
        raise ValueError(f"n_workers must be at least 1, got {n_workers}")
    target = spec.tuning.n_trials if n_trials is None else n_trials
    if target < 1:
        raise ValueError(f"n_trials must be at least 1, got {target}")
    study = optuna.create_study(
        study_name=study_name,
        storage=open_storage(storage),
        direction=spec.primary_direction,
        sampler=_sampler(spec, 0),
        pruner=_pruner(spec),
        load_if_exists=True,
    )
    if not study.get_trials(deepcopy=False):
        study.set_user_attr("leanops.model", spec.name)
        study.set_user_attr("leanops.metric", spec.metric.primary)
        study.set_user_attr("leanops.objective_hash", objective_hash(spec))
        study.enqueue_trial(default_trial_params(spec), user_attrs={DEFAULT_TRIAL_ATTR: True}, skip_if_exists=True)
    counts = _state_counts(study)
    finished = _finished(counts)
    remaining = max(0, target - finished)
    shares = tuple(remaining // n_workers + (1 if i < remaining % n_workers else 0) for i in range(n_workers))
    return StudyPlan(
        study_name=study_name,
        storage=storage,
        target_trials=target,
        finished_trials=finished,
        shares=shares,
    )


def run_trials(
    X_train: pd.DataFrame,
    y_train: pd.Series,
    X_valid: pd.DataFrame,
    y_valid: pd.Series,
    spec: Spec,
    *,
    study_name: str,
    storage: str | None = None,
    n_trials: int,
    timeout_seconds: float | None = None,
    worker_index: int = 0,
    n_jobs: int = 1,
    threads_per_trial: int = 1,
    build_model: BuildModel | None = None,
    on_progress: Progress = quiet,
) -> TrialBatchResult:
    """One worker's share: run ``n_trials`` trials (or until ``timeout_seconds``) of an existing study.

    ``n_jobs`` trials run at once in threads of this process (XGBoost releases the GIL while it
    fits); each trial's booster uses ``threads_per_trial`` threads. Parallel trials use cores
    better than threads inside one small fit, and OpenMP threads degrade badly on a busy machine,
    hence one thread by default; raise it for large training sets on idle cores. A trial that
    raises is recorded as failed and the worker goes on. ``on_progress`` hears of each finished trial.
    """
    if n_trials < 0:
        raise ValueError(f"n_trials must not be negative, got {n_trials}")
    if n_jobs < 1 or threads_per_trial < 1:
        raise ValueError(f"n_jobs and threads_per_trial must be at least 1, got {n_jobs} and {threads_per_trial}")
    started = time.perf_counter()
    mine: list[Any] = []
    finished = threading.Lock()  # trials of n_jobs threads end in their own threads

    def record(study: "optuna.Study", trial: Any) -> None:
        with finished:
            mine.append(trial)
            best = [t.value for t in mine if t.state.name == "COMPLETE" and t.value is not None]
            pick = max if study.direction.name == "MAXIMIZE" else min
            best_text = f"; best {spec.metric.primary} so far {pick(best):.5f}" if best else ""
            on_progress(len(mine) / n_trials, f"{len(mine)} of {n_trials} trials finished{best_text}")

    if n_trials:
        study = _load_study(spec, study_name, storage, worker_index)
        data = _prepare(X_train, y_train, X_valid, y_valid, spec, build_model)
        study.optimize(
            _objective(data, spec, threads_per_trial, worker_index),
            n_trials=n_trials,
            timeout=timeout_seconds,
            n_jobs=n_jobs,
            catch=(Exception,),
            callbacks=[record],
        )
    states = [t.state.name for t in mine]
    return TrialBatchResult(
        study_name=study_name,
        worker_index=worker_index,
        n_trials=len(mine),
        n_complete=states.count("COMPLETE"),
        n_failed=states.count("FAIL"),
        n_pruned=states.count("PRUNED"),
        seconds=round(time.perf_counter() - started, 3),
    )


def summarize_study(spec: Spec, *, study_name: str, storage: str | None = None, report: bool = True) -> TuningResult:
    """Best parameters, default vs best validation score, trial counts, the trials table and an HTML report.

    ``best_params`` are ready for ``modeling.fit_models``: the tuned values plus ``n_estimators``
    from the best trial's early stopping.
    """
    study = _load_study(spec, study_name, storage)
    trials = study.get_trials(deepcopy=False)
    counts = _state_counts(study)
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    if not complete:
        errors = sorted({t.user_attrs[ERROR_ATTR] for t in trials if ERROR_ATTR in t.user_attrs})
        raise TuningFailed(
            f"study {study_name!r}: no trial completed ({counts.get('FAIL', 0)} failed, "
            f"{counts.get('PRUNED', 0)} pruned, {counts.get('RUNNING', 0)} running)"
            + (f"; errors: {errors[:3]}" if errors else "")
        )
    best = study.best_trial
    best_iteration = best.user_attrs.get(BEST_ITERATION_ATTR)
    best_params = dict(best.params)
    if best_iteration is not None:
        best_params["n_estimators"] = int(best_iteration) + 1
    default = next((t for t in trials if t.user_attrs.get(DEFAULT_TRIAL_ATTR)), None)
    table = trials_table(study)
    return TuningResult(
        study_name=study_name,
        best_params=best_params,
        best_value=float(best.value),
        default_value=float(default.value) if default is not None and default.state.name == "COMPLETE" else None,
        n_trials=len(trials),
        n_complete=counts.get("COMPLETE", 0),
        n_failed=counts.get("FAIL", 0),
        n_pruned=counts.get("PRUNED", 0),
        metric=spec.metric.primary,
        direction=spec.primary_direction,
        best_trial=best.number,
        n_running=counts.get("RUNNING", 0) + counts.get("WAITING", 0),
        storage=redact_storage(resolve_storage(storage)),
        trials=table,
        report_html=render_report(study, spec, table) if report else "",
    )


def choose_params(result: TuningResult, min_improvement: float) -> ParamsChoice:
    """The study's best parameters if they beat the spec's own (its enqueued default trial) on the
    validation split by at least ``min_improvement``; otherwise None, i.e. train with the spec's."""
    improvement = result.improvement
    if improvement is None:
        return ParamsChoice(result.best_params, result.study_name,
                            f"tuned parameters ({result.metric} {result.best_value:.5f}): the spec's own were not evaluated")
    gain = f"{result.metric} {result.best_value:.5f} vs {result.default_value:.5f} with the spec's parameters"
    if improvement >= min_improvement and result.best_params:
        return ParamsChoice(result.best_params, result.study_name, f"tuned parameters: {gain} (+{improvement:.5f})")
    return ParamsChoice(None, result.study_name,
                        f"the spec's parameters: tuning gained {improvement:+.5f} ({gain}), below the {min_improvement:g} required")


def tune(
    X_train: pd.DataFrame,
    y_train: pd.Series,
    X_valid: pd.DataFrame,
    y_valid: pd.Series,
    spec: Spec,
    *,
    study_name: str,
    storage: str | None = None,
    n_trials: int | None = None,
    timeout_seconds: float | None = None,
    n_jobs: int = 1,
    threads_per_trial: int = 1,
    build_model: BuildModel | None = None,
    report: bool = True,
    on_progress: Progress = quiet,
) -> TuningResult:
    """Tune in this process: create or resume the study, run the remaining budget with ``n_jobs`` threads, summarize.

    Budget: ``n_trials`` finished trials in the study (default ``spec.tuning.n_trials``) and
    ``timeout_seconds`` of wall clock for this call (default ``spec.tuning.timeout_seconds``).
    """
    plan = prepare_study(spec, study_name=study_name, storage=storage, n_trials=n_trials)
    run_trials(
        X_train, y_train, X_valid, y_valid, spec,
        study_name=study_name,
        storage=storage,
        n_trials=plan.remaining,
        timeout_seconds=spec.tuning.timeout_seconds if timeout_seconds is None else timeout_seconds,
        n_jobs=n_jobs,
        threads_per_trial=threads_per_trial,
        build_model=build_model,
        on_progress=on_progress,
    )
    return summarize_study(spec, study_name=study_name, storage=storage, report=report)


# --- reports -------------------------------------------------------------------------------------


def trials_table(study: "optuna.Study") -> pd.DataFrame:
    """One row per trial: number, state, value, seconds, parameters and leanops attributes."""
    frame = study.trials_dataframe(attrs=("number", "value", "state", "datetime_start", "duration", "params", "user_attrs"))
    if frame.empty:
        return frame
    if "duration" in frame:
        frame["seconds"] = frame.pop("duration").dt.total_seconds()
    frame = frame.rename(columns=lambda c: c.removeprefix("params_").removeprefix("user_attrs_"))
    return frame.reset_index(drop=True)


def render_report(study: "optuna.Study", spec: Spec, table: pd.DataFrame | None = None) -> str:
    """One self-contained HTML page (plotly.js inlined once, works offline): history, importances, learning curves, trials."""
    import html

    import optuna.visualization as vis

    metric = spec.metric.primary
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    sections: list[tuple[str, Any]] = [("Optimisation history", vis.plot_optimization_history(study, target_name=metric))]
    notes = []
    if len(complete) >= 2:
        sections.append(("Parameter importances", vis.plot_param_importances(study, target_name=metric)))
    else:
        notes.append("Parameter importances need at least two completed trials.")
    if any(t.intermediate_values for t in trials):
        sections.append(("Validation metric per boosting round (pruned trials stop early)", vis.plot_intermediate_values(study)))
    body = []
    for i, (title, figure) in enumerate(sections):
        body.append(f"<h2>{html.escape(title)}</h2>")
        body.append(figure.to_html(full_html=False, include_plotlyjs=i == 0))
    counts = _state_counts(study)
    summary = ", ".join(f"{n} {state.lower()}" for state, n in sorted(counts.items()))
    best = f"best {metric} {study.best_value:.5f} (trial {study.best_trial.number})" if complete else "no completed trial"
    table = trials_table(study) if table is None else table
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>Tuning {html.escape(study.study_name)}</title></head><body>"
        f"<h1>Tuning {html.escape(study.study_name)}</h1>"
        f"<p>{len(trials)} trials: {html.escape(summary)}; {html.escape(best)}.</p>"
        + "".join(f"<p>{html.escape(n)}</p>" for n in notes)
        + "".join(body)
        + "<h2>Trials</h2>"
        + table.to_html(index=False, float_format=lambda v: f"{v:.5g}" if math.isfinite(v) else str(v))
        + "</body></html>"
    )
