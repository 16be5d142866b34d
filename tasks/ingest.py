"""Stage: read a batch (local path or s3://) with its content fingerprint."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from leanops import storage
from leanops.errors import BatchReadError
from leanops.results import Batch
from tasks._policies import IO_RETRIES, IO_RETRY_DELAYS, IO_RETRY_JITTER, retry_transient_only


# Not cached: reading the batch is the work a cache hit would repeat (a persisted copy is as big).
@task(
    retries=IO_RETRIES,
    retry_delay_seconds=IO_RETRY_DELAYS,
    retry_jitter_factor=IO_RETRY_JITTER,
    retry_condition_fn=retry_transient_only,
    cache_policy=NO_CACHE,
    persist_result=False,
    task_run_name="load_batch {uri}",
)
def load_batch(uri: str | None) -> Batch:
    if not uri:
        raise BatchReadError("no batch URI: pass batch_uri or set default_batch_uri in the model spec")
    frame, fingerprint = storage.read_table(uri)
    return Batch(uri=uri, fingerprint=fingerprint, frame=frame, sources=(uri,))
