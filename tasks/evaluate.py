"""Stage: holdout metrics for the model, the baseline and the current champion (when there is one)."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from leanops import modeling, registry
from leanops.registry import ModelVersionInfo
from leanops.results import EvalResult, FeatureSet, TrainResult
from leanops.spec import Spec
from tasks._policies import CACHED, RETRY_IO


@task(
    cache_policy=NO_CACHE,
    **RETRY_IO,
)
def find_champion(spec: Spec) -> ModelVersionInfo | None:
    return registry.get_alias(spec.registered_model_name, registry.CHAMPION)


# Cached on (model, holdout, champion version): a new champion means a new comparison.
@task(**CACHED, **RETRY_IO)
def evaluate_model(train: TrainResult, features: FeatureSet, spec: Spec, champion: ModelVersionInfo | None) -> EvalResult:
    logger = get_run_logger()
    champion_model = registry.load_model(champion) if champion else None
    result = modeling.evaluate(
        train, features, spec, champion=champion_model, champion_version=champion.version if champion else None
    )
    create_table_artifact(
        key=f"{spec.name}-holdout-metrics",
        table=result.table(),
        description=f"Holdout metrics ({result.holdout_rows} rows): model vs baseline"
        + (f" vs champion v{result.champion_version}" if result.champion_version else ""),
    )
    primary = spec.metric.primary
    logger.info("holdout %s: model %.4f, baseline %.4f", primary, result.model[primary], result.baseline[primary])
    return result
