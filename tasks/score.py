"""Stage: score a batch with a registered version, chunk by chunk, with its progress in the Prefect UI."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from leanops import monitoring, registry, scoring
from leanops.registry import ModelVersionInfo
from leanops.scoring import ScoringResult
from leanops.settings import get_settings
from leanops.spec import Spec
from tasks._policies import RETRY_IO
from tasks._progress import progress_artifact


@task(cache_policy=NO_CACHE, retries=0)
def resolve_scoring_target(spec: str, batch_uri: str, bucket: str, key: str, version_id: str = "") -> monitoring.MonitoringTarget:
    """The object to score and its model: a key ``<scoring prefix><model>/<file>`` names the model."""
    return monitoring.resolve_target(spec, batch_uri, bucket, key, get_settings().s3_scoring_prefix, version_id)


@task(cache_policy=NO_CACHE, **RETRY_IO)
def find_scoring_model(spec: Spec, version: int | str | None = None) -> ModelVersionInfo:
    """The given version (a number or an alias), else the champion; ModelNotFound says which is missing."""
    return registry.resolve_version(spec.registered_model_name, str(version or registry.CHAMPION))


# Not cached: the output object is the result, and scoring the same input with the same version rewrites it.
@task(cache_policy=NO_CACHE, persist_result=False, task_run_name="score_batch {batch_uri}", **RETRY_IO)
def score_batch(batch_uri: str, version: ModelVersionInfo, spec: Spec) -> ScoringResult:
    # A version is scored as it was trained: its inputs and their contract, even after the spec changed.
    trained_spec = monitoring.as_trained(spec, registry.load_recorded_spec(version))
    model = registry.load_model(version)
    with progress_artifact(f"{spec.name}-scoring-progress", f"Scoring {batch_uri} with v{version.version}") as report:
        result = scoring.score_batch(batch_uri, model, spec.name, version.version, trained_spec,
                                     on_progress=lambda rows, share: report(share, f"{rows:,} rows scored"))
    create_markdown_artifact(key=f"{spec.name}-scoring-summary", markdown=result.summary_markdown(),
                             description=f"Batch scoring of {batch_uri}")
    get_run_logger().info("scored %d rows of %s with v%s -> %s (%.0f rows/s)", result.rows, batch_uri,
                          version.version, result.output_uri, result.rows_per_second)
    return result
