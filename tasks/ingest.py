"""Stage: name a batch by its storage identity without reading it, read a batch (local path or s3://, one
object or a window under a prefix) with its fingerprint, and refuse a training set far smaller than the champion's."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from leanops import batches
from leanops.registry import ModelVersionInfo
from leanops.results import Batch, BatchIdentity
from leanops.spec import Spec
from tasks._policies import RETRY_IO
from tasks._progress import progress_artifact


# Not cached: one HEAD / stat or listing, which is what tells whether anything cached still holds.
@task(**RETRY_IO, cache_policy=NO_CACHE, task_run_name="identify_batch {uri}")
def identify_batch(uri: str | None, spec: Spec) -> BatchIdentity:
    """What :func:`load_batch` would read now (the same URI or window rules), named by the objects' ETags
    or stat, without reading them: equal identities mean equal content."""
    return batches.identify_batch(uri or batches.default_source(spec), spec.retrain_window, batches.rejected_by_manifest())


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
    source = uri or batches.default_source(spec)
    if not batches.is_prefix(source):  # one object: nothing to follow
        return batches.read_batch(source, spec.retrain_window, time_column, batches.rejected_by_manifest())
    with progress_artifact(f"{spec.name}-window-loading", f"Reading the retrain window under {source}") as report:
        batch = batches.read_batch(source, spec.retrain_window, time_column, batches.rejected_by_manifest(), on_progress=report)
    if len(batch.sources) > 1:
        get_run_logger().info(
            "retrain window: %d rows from %d batches: %s", len(batch.frame), len(batch.sources), ", ".join(batch.sources)
        )
    return batch


@task(cache_policy=NO_CACHE)
def check_training_size(train_rows: int | None, champion: ModelVersionInfo | None, allow_small: bool = False) -> str:
    """Refuse (GateFailed) a training set of ``train_rows`` under half the champion's, unless ``allow_small``
    (None: a version registered before its row count was recorded, nothing to compare)."""
    if train_rows is None:
        return "training rows unknown: not compared with the champion's"
    verdict = batches.check_training_size(
        train_rows, champion.metrics.get("rows_train") if champion else None,
        champion.version if champion else None, allow_small,
    )
    get_run_logger().info(verdict)
    return verdict
