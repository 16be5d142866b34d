"""Stage: tune the model's hyper-parameters (Optuna).

Two shapes. ``tune_params`` tunes in one task run (``n_jobs`` threads). For trials on several
machines or processes, a flow maps ``run_trial_batch`` over workers (e.g. with prefect-dask's
``DaskTaskRunner``) between ``prepare_tuning`` and ``summarize_tuning``::

    plan = prepare_tuning(spec, features.fingerprint, storage, n_workers)
    batches = run_trial_batch.map(unmapped(features), unmapped(spec), unmapped(plan), range(n_workers))
    result = summarize_tuning(spec, plan, wait_for=batches)

Workers share the study through its storage (``journal:<path>`` on a disk all workers see, or a
database URL), never through Prefect results. A rerun resumes the study and only runs what is
left of the budget, so trial batches are never cached and have no retries: the study is the record.
"""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from leanops import study_log, tuning
from leanops.results import FeatureSet, ParamsChoice, StudyPlan, TrialBatchResult, TuningResult
from leanops.spec import Spec
from tasks._policies import CACHED, RETRY_IO
from tasks._progress import progress_artifact


def _summary_markdown(result: TuningResult) -> str:
    default = "n/a" if result.default_value is None else f"{result.default_value:.5f}"
    rows = "\n".join(f"| {name} | {value} |" for name, value in sorted(result.best_params.items()))
    return (
        f"### Tuning `{result.study_name}`\n\n"
        f"{result.metric} on the validation split: best **{result.best_value:.5f}** (trial {result.best_trial}), "
        f"default parameters {default}.\n\n"
        f"Trials: {result.n_complete} complete, {result.n_pruned} pruned, {result.n_failed} failed.\n\n"
        f"| parameter | best value |\n|---|---|\n{rows}\n"
    )


def _report(result: TuningResult) -> None:
    get_run_logger().info(
        "study %s: best %s %.5f vs default %s; %d complete, %d pruned, %d failed",
        result.study_name, result.metric, result.best_value, result.default_value,
        result.n_complete, result.n_pruned, result.n_failed,
    )
    create_markdown_artifact(
        key=f"tuning-{result.study_name}".lower()[:100], markdown=_summary_markdown(result),
        description="Best parameters and validation score of a tuning study.",
    )


# Cached across runs by data fingerprint + spec + storage + task source: a finished study is not re-run.
# No retries: a crashed tuning is resumed by the next run from its storage.
@task(**CACHED)
def tune_params(features: FeatureSet, spec: Spec, storage: str | None = None, n_jobs: int = 1) -> TuningResult:
    study_name = tuning.study_name_for(spec, features.fingerprint)
    with progress_artifact(f"{spec.name}-tuning-progress", f"Tuning study {study_name}") as report:
        result = tuning.tune(
            features.X_train, features.y_train, features.X_valid, features.y_valid, spec,
            study_name=study_name, storage=storage, n_jobs=n_jobs, on_progress=report,
        )
    _report(result)
    return result


@task(cache_policy=NO_CACHE)
def prepare_tuning(spec: Spec, data_fingerprint: str, storage: str | None = None, n_workers: int = 1) -> StudyPlan:
    plan = tuning.prepare_study(
        spec, study_name=tuning.study_name_for(spec, data_fingerprint), storage=storage, n_workers=n_workers
    )
    get_run_logger().info(
        "study %s: %d of %d trials finished, shares %s", plan.study_name, plan.finished_trials, plan.target_trials, plan.shares
    )
    return plan


@task(cache_policy=NO_CACHE)
def run_trial_batch(
    features: FeatureSet,
    spec: Spec,
    plan: StudyPlan,
    worker_index: int,
    threads_per_trial: int = 1,
) -> TrialBatchResult:
    """One worker's share of the plan (a Dask worker process runs one trial at a time)."""
    with progress_artifact(f"{spec.name}-tuning-progress-worker-{worker_index}", f"Tuning study {plan.study_name}, worker {worker_index}") as report:
        batch = tuning.run_trials(
            features.X_train, features.y_train, features.X_valid, features.y_valid, spec,
            study_name=plan.study_name,
            storage=plan.storage,
            n_trials=plan.shares[worker_index],
            timeout_seconds=spec.tuning.timeout_seconds,
            worker_index=worker_index,
            threads_per_trial=threads_per_trial,
            on_progress=report,
        )
    get_run_logger().info(
        "worker %d: %d trials (%d complete, %d pruned, %d failed) in %.1f s",
        worker_index, batch.n_trials, batch.n_complete, batch.n_pruned, batch.n_failed, batch.seconds,
    )
    return batch


@task(cache_policy=NO_CACHE)
def summarize_tuning(spec: Spec, plan: StudyPlan) -> TuningResult:
    result = tuning.summarize_study(spec, study_name=plan.study_name, storage=plan.storage)
    _report(result)
    return result


@task(cache_policy=NO_CACHE, retries=0)
def choose_params(result: TuningResult, spec: Spec) -> ParamsChoice:
    """Tuned parameters only when they clearly beat the spec's own on the validation split."""
    choice = tuning.choose_params(result, spec.tuning.min_improvement)
    get_run_logger().info("training with %s", choice.explanation)
    return choice


@task(
    cache_policy=NO_CACHE,
    **RETRY_IO,
)
def log_tuning(result: TuningResult, spec: Spec, tags: dict[str, str] | None = None) -> TuningResult:
    """Record the study in MLflow (one run per study; a resumed study updates its run)."""
    logged = study_log.log_study(result, spec, tags=tags)
    get_run_logger().info("study %s logged to MLflow: %s", logged.study_name, logged.report_uris.get("run"))
    return logged
