"""Stage: drift of a batch against the champion's training reference, its report, history and verdict."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from leanops import drift, drift_log, monitoring, prediction_labels
from leanops.registry import ModelVersionInfo
from leanops.results import Batch, DriftPersistence, DriftResult, MonitorOutcome
from leanops.settings import get_settings
from leanops.spec import Spec
from tasks._locks import model_lock
from tasks._policies import CACHED, RETRY_IO


def artifact_key(spec: Spec, what: str) -> str:
    # Spec names are restricted to what Prefect artifact keys accept (lowercase, digits, dashes).
    return f"{spec.name}-{what}"


@task(cache_policy=NO_CACHE, retries=0)
def resolve_target(spec: str, batch_uri: str, bucket: str, key: str, version_id: str = "") -> monitoring.MonitoringTarget:
    return monitoring.resolve_target(spec, batch_uri, bucket, key, get_settings().s3_incoming_prefix, version_id)


# In memory only: the check and its report both read these; persisting a model and frames per check is waste.
@task(cache_policy=NO_CACHE, persist_result=False, **RETRY_IO)
def load_champion_data(champion: ModelVersionInfo, spec: Spec) -> monitoring.ChampionData:
    # The champion is checked as it was trained, even after its spec changed (features, target, metrics).
    return monitoring.load_champion_data(champion, spec)


# Cached per (batch, champion, spec, code): re-checking the same batch against the same champion is free and
# gives the same verdict and report location. The verdict only: the report comes after its events.
@task(**CACHED, **RETRY_IO)
def compute_drift(batch: Batch, champion: monitoring.ChampionData) -> DriftResult:
    spec = champion.spec
    result = monitoring.check_batch(batch.frame, champion)
    if result.status != "inconclusive":
        # The report's run is opened now, so the verdict's events and alert link to where the report will be.
        check_run = drift_log.open_drift_check(spec.name, champion.info.version, batch.uri, result)
        result = result.with_report(check_run.report_url, check_run.report_json_uri)
        create_table_artifact(key=artifact_key(spec, "drift-features"), table=result.table(),
                              description="Per-feature drift scores (drifted first)")
    create_markdown_artifact(key=artifact_key(spec, "drift-summary"), markdown=result.summary_markdown(),
                             description=f"Drift check of {batch.uri}")
    get_run_logger().info("drift of %s vs v%s: %s", batch.uri, champion.info.version, result.reason or result.status)
    return result


# After the verdict's history, events, alerts and processed mark: its cost (Evidently) never delays them, and its
# failure (DriftReportError, the run then ends Failed and alerts) cannot take them back.
@task(**CACHED, **RETRY_IO)
def attach_drift_report(batch: Batch, champion: monitoring.ChampionData, result: DriftResult) -> str:
    spec = champion.spec
    rows = get_settings().drift_report_sample_rows
    monitoring.attach_report(batch.frame, batch.uri, champion, result, rows)
    create_link_artifact(key=artifact_key(spec, "drift-report"), link=result.report_html_uri, link_text="Evidently drift report",
                         description=f"Drift of {batch.uri} against champion v{champion.info.version}")
    get_run_logger().info("drift report of %s attached (at most %d rows a side): %s", batch.uri, rows, result.report_html_uri)
    return result.report_html_uri or ""


@task(cache_policy=NO_CACHE, **RETRY_IO)
def record_drift_check(result: DriftResult, batch: Batch, champion: ModelVersionInfo, spec: Spec) -> DriftPersistence:
    """Append the check to the model's drift history and say whether drift holds for K of the last N checks.

    The history is one object, read then rewritten: checks of one model that finish together (batches
    landing at once run side by side) take turns under the model's lock, or one would drop the other's row."""
    with model_lock(spec.name, "drift-history"):
        history = drift.append_history(
            monitoring.history_uri(spec.name), result, model=spec.name, version=champion.version, batch_uri=batch.uri
        )
        persistence = drift.drift_persists(history, model=spec.name, k=spec.drift.persistence_k, n=spec.drift.persistence_n)
    get_run_logger().info("drift in %d of the last %d conclusive checks", persistence.drift_checks, persistence.checks_considered)
    return persistence


@task(cache_policy=NO_CACHE, **RETRY_IO)
def join_logged_predictions(batch: Batch, spec: Spec) -> Batch:
    """A labels batch of the prediction log becomes the logged sample rows it labels (joined by prediction id);
    any other batch stays as it is."""
    joined = prediction_labels.join_labels(batch, spec)
    if joined is not batch:
        get_run_logger().info("labels %s: %d of %d prediction ids joined to the logged sample", batch.uri, len(joined.frame), len(batch.frame))
    return joined


@task(cache_policy=NO_CACHE, retries=0)
def note_no_champion(spec: Spec, batch_uri: str) -> MonitorOutcome:
    message = f"No champion for {spec.name} yet: {batch_uri} was not checked for drift (promote a model first)."
    get_run_logger().warning(message)
    create_markdown_artifact(key=artifact_key(spec, "drift-summary"), markdown=f"**{message}**", description="No champion")
    return MonitorOutcome(model=spec.name, batch_uri=batch_uri, status="no_champion")
