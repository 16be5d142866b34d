"""Stage: log and register the trained model in MLflow with its lineage; set the challenger alias."""

from __future__ import annotations

from prefect import get_run_logger, runtime, task
from prefect.artifacts import create_link_artifact
from prefect.cache_policies import NO_CACHE

from leanops import lineage, registration, registry
from leanops.results import Batch, BatchIdentity, EvalResult, FeatureSet, ParamsChoice, RegistrationResult, TrainResult
from leanops.spec import Spec
from tasks._locks import model_lock
from tasks._policies import RETRY_IO


# Not cached by Prefect: the registry is the record. A rerun on an unchanged batch (same ETags / stat),
# spec and code finds its version here before anything is read: no download, no parse, no cached frame
# or model loaded back (Prefect reads a cached task's result as soon as the task is called).
@task(cache_policy=NO_CACHE, **RETRY_IO)
def find_registered_retrain(source: BatchIdentity, spec: Spec, tuned: bool) -> RegistrationResult | None:
    found = registration.find_earlier_retrain(spec, lineage.retrain_key(source.identity, spec.spec_hash, tuned))
    if found is not None:
        get_run_logger().info(
            "%s is unchanged since %s v%s trained on it with this spec and code: nothing to train", source.uri, found.model_name, found.version,
        )
    return found


# Not cached by Prefect: the registry itself is the idempotency record (the training key tag),
# so a deleted version is re-created instead of being "remembered" by a stale cache entry.
# Registrations of one model are serialised across processes and workers by its "registration" lock.
@task(
    cache_policy=NO_CACHE,
    **RETRY_IO,
)
def register_model(
    spec: Spec, train: TrainResult, evaluation: EvalResult, features: FeatureSet, batch: Batch,
    alias: str = registry.CHALLENGER, tuning: ParamsChoice | None = None,
) -> RegistrationResult:
    run_lineage = lineage.build_lineage(
        batch.uri, batch.fingerprint, spec.spec_hash, runtime.flow_run.id, batch.sources, tuning=tuning,
        data_identity=batch.identity,
    )
    key = lineage.training_key(run_lineage, train.fingerprint)
    # Find-by-training-key then create is a read-then-write: two retrains of the same data at once
    # (retrain/weekly and retrain/on-drift have separate deployment limits) take turns under the model's lock.
    with model_lock(spec.registered_model_name, "registration"):
        result = registration.register_training(spec, train, evaluation, features, run_lineage, key, alias=alias)
    logger = get_run_logger()
    if result.created:
        logger.info("registered %s v%s (alias %s): %s", result.model_name, result.version, alias, result.run_url)
    else:
        logger.info("same training already registered as %s v%s: nothing new", result.model_name, result.version)
    create_link_artifact(
        key=f"{spec.name}-mlflow-run",
        link=result.run_url,
        link_text=f"MLflow run of {result.model_name} v{result.version}",
        description="The registered model's run: params, metrics, lineage, reference sample.",
    )
    return result
