"""Stage: read a batch (local path or s3://, one object or a window under a prefix) with its fingerprint."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from leanops import batches
from leanops.spec import Spec
from leanops.results import Batch
from tasks._policies import RETRY_IO


# Not cached: reading the batch is the work a cache hit would repeat (a persisted copy is as big).
@task(
    **RETRY_IO,
    cache_policy=NO_CACHE,
    persist_result=False,
    task_run_name="load_batch {uri}",
)
def load_batch(uri: str | None, spec: Spec) -> Batch:
    """One object, or (for a prefix ending in /, or no URI) the spec's retrain window of landed batches."""
    batch = batches.read_batch(uri or batches.default_source(spec), spec.retrain_window)
    if len(batch.sources) > 1:
        get_run_logger().info("retrain window: %d batches: %s", len(batch.sources), ", ".join(batch.sources))
    return batch
