"""Load a model spec by name or path (a task so a bad spec shows up as a failed, named step)."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from leanops.spec import Spec, load_spec


@task(cache_policy=NO_CACHE, retries=0)
def load_model_spec(spec: str) -> Spec:
    return load_spec(spec)
