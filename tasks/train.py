"""Stage: fit the model and its baseline."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from leanops import batches, dask_training, modeling
from leanops.errors import SpecError
from leanops.results import FeatureSet, TrainResult
from leanops.spec import Spec
from tasks._policies import CACHED, RETRY_IO


@task(**CACHED)
def fit_model(features: FeatureSet, spec: Spec, params: dict[str, Any] | None = None) -> TrainResult:
    result = modeling.fit_models(features, spec, params)
    get_run_logger().info("fitted XGBoost in %.1f s with %s", result.fit_seconds, result.params)
    return result


# Not cached: the window is read on the cluster, not here (the flow's find_registered_retrain already
# skipped an unchanged window); the result holds a sample and the holdout, not the window.
@task(cache_policy=NO_CACHE, persist_result=False, **RETRY_IO, task_run_name="fit_model_on_dask {uri}")
def fit_model_on_dask(uri: str | None, spec: Spec, tuned: bool = False) -> dask_training.ClusterTraining:
    """Read the batch window and train on a Dask cluster (spec ``model.engine: dask``) with the spec's params."""
    if tuned:
        raise SpecError("model.engine 'dask' runs no tuning study: retrain with tune=False (tuned parameters go in model.params)")
    result = dask_training.train_on_cluster(uri or batches.default_source(spec), spec,
                                            is_rejected=batches.rejected_by_manifest())
    logger = get_run_logger()
    for warning in result.warnings:
        logger.warning("contract warning: %s", warning)
    logger.info("split: %s", result.features.split_description)
    logger.info("fitted XGBoost on %d Dask workers in %.1f s with %s", result.workers, result.train.fit_seconds, result.train.params)
    return result
