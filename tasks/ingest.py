"""Stage: read a batch (local path or s3://, one object or a window under a prefix) with its fingerprint,
and refuse a training set far smaller than the champion's."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from leanops import batches
from leanops.registry import ModelVersionInfo
from leanops.results import Batch, FeatureSet
from leanops.spec import Spec
from tasks._policies import RETRY_IO


# Not cached: reading the batch is the work a cache hit would repeat (a persisted copy is as big).
@task(
    **RETRY_IO,
    cache_policy=NO_CACHE,
    persist_result=False,
    task_run_name="load_batch {uri}",
)
def load_batch(uri: str | None, spec: Spec) -> Batch:
    """One object, or (for a prefix ending in /, or no URI) the spec's retrain window of landed batches,
    leaving out batches the manifest records as rejected."""
    time_column = spec.time.column if spec.time else None
    batch = batches.read_batch(
        uri or batches.default_source(spec), spec.retrain_window, time_column, batches.rejected_by_manifest()
    )
    if len(batch.sources) > 1:
        get_run_logger().info(
            "retrain window: %d rows from %d batches: %s", len(batch.frame), len(batch.sources), ", ".join(batch.sources)
        )
    return batch


@task(cache_policy=NO_CACHE)
def check_training_size(features: FeatureSet, champion: ModelVersionInfo | None, allow_small: bool = False) -> str:
    """Refuse (GateFailed) a training set under half the champion's, unless ``allow_small``."""
    verdict = batches.check_training_size(
        features.sizes["train"], champion.metrics.get("rows_train") if champion else None,
        champion.version if champion else None, allow_small,
    )
    get_run_logger().info(verdict)
    return verdict
