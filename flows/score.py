"""score: a batch through the model's champion (or a given version), its predictions to the object store."""

from __future__ import annotations

from prefect import flow

from leanops import events
from leanops.scoring import ScoringResult
from tasks.alert import alert_on_failure
from tasks.publish import publish_event
from tasks.score import find_scoring_model, resolve_scoring_target, score_batch
from tasks.spec import load_model_spec


@flow(name="score", log_prints=True, on_failure=[alert_on_failure])
def score(
    spec: str = "", batch_uri: str = "", bucket: str = "", key: str = "", version_id: str = "",
    model_version: int | str | None = None,
) -> ScoringResult:
    """Score one table (``batch_uri``, or ``bucket`` + ``key`` [+ ``version_id``] from an S3 event) with
    ``model_version`` (a number or an alias; default: the champion) of the model ``spec`` names.

    ``spec`` defaults to the model named by the key: ``<scoring prefix><model>/<file>``. Predictions go to
    ``<scoring output root><model>/<file>.v<version>.<input fingerprint>.parquet``.
    """
    target = resolve_scoring_target(spec, batch_uri, bucket, key, version_id)
    model_spec = load_model_spec(target.spec)
    version = find_scoring_model(model_spec, model_version)
    result = score_batch(target.batch_uri, version, model_spec)
    publish_event(events.batch_scored(
        model_spec.name, result.version, result.input_uri, result.input_fingerprint, result.output_uri, result.rows
    ))
    return result


if __name__ == "__main__":
    from flows._cli import run_from_command_line

    run_from_command_line(score)
