"""Lifecycle event names and payloads: the pipeline's public API.

Flows emit these through Prefect's event system and triggers in ``prefect.yaml`` listen
to them. Every payload builder returns every field a trigger template may read, so a
template never meets a missing field (which silently creates no run).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

BATCH_LANDED = "leanops.batch.landed"
BATCH_TO_SCORE = "leanops.batch.to_score"
BATCH_SCORED = "leanops.batch.scored"
DRIFT_CHECKED = "leanops.drift.checked"
DRIFT_DETECTED = "leanops.drift.detected"
MODEL_REGISTERED = "leanops.model.registered"
MODEL_PROMOTED = "leanops.model.promoted"
MODEL_REJECTED = "leanops.model.rejected"
MODEL_ROLLED_BACK = "leanops.model.rolled_back"
MODEL_DEGRADED = "leanops.model.degraded"

ALL_EVENTS = (
    BATCH_LANDED,
    BATCH_TO_SCORE,
    BATCH_SCORED,
    DRIFT_CHECKED,
    DRIFT_DETECTED,
    MODEL_REGISTERED,
    MODEL_PROMOTED,
    MODEL_REJECTED,
    MODEL_ROLLED_BACK,
    MODEL_DEGRADED,
)

_NAMESPACE = uuid.UUID("6f1c2b7e-3b7a-4c43-9d1e-6c1f0c8a2e11")


def model_resource_id(model_name: str) -> str:
    return f"leanops.model.{model_name}"


def deterministic_event_id(*parts: object) -> str:
    """Same parts, same id: Prefect deduplicates a redelivered event by its id."""
    return str(uuid.uuid5(_NAMESPACE, "|".join(str(p) for p in parts)))


@dataclass(frozen=True)
class LifecycleEvent:
    event: str
    resource_id: str
    payload: dict[str, Any] = field(default_factory=dict)
    resource_labels: dict[str, str] = field(default_factory=dict)
    event_id: str | None = None
    # ISO 8601 time the thing happened at its source (e.g. S3's eventTime); None means "when sent".
    occurred: str | None = None

    @property
    def resource(self) -> dict[str, str]:
        return {"prefect.resource.id": self.resource_id, **self.resource_labels}


def model_event(event: str, model_name: str, payload: dict[str, Any], event_id: str | None = None) -> LifecycleEvent:
    return LifecycleEvent(
        event=event,
        resource_id=model_resource_id(model_name),
        payload={"model_name": model_name, **payload},
        resource_labels={"leanops.model": model_name},
        event_id=event_id,
    )


def model_registered(model_name: str, version: str, run_id: str, data_uri: str, primary_metric: str, value: float) -> LifecycleEvent:
    return model_event(
        MODEL_REGISTERED,
        model_name,
        {"version": str(version), "run_id": run_id, "data_uri": data_uri, "metric": primary_metric, "value": value},
        event_id=deterministic_event_id(MODEL_REGISTERED, model_name, version),
    )


def batch_landed(
    bucket: str,
    key: str,
    version_id: str | None,
    sequencer: str | None,
    size: int | None,
    etag: str | None,
    occurred: str | None = None,
    event: str = BATCH_LANDED,
) -> LifecycleEvent:
    """A new object under the watched prefix (``event``: landed for drift checks, to_score for batch
    scoring; the same payload). Resource: its s3:// URI."""
    uri = f"s3://{bucket}/{key}"
    return LifecycleEvent(
        event=event,
        resource_id=uri,
        payload={
            "bucket": bucket,
            "key": key,
            "uri": uri,
            "version_id": version_id or "",
            "sequencer": sequencer or "",
            "size": size if size is not None else -1,
            "etag": etag or "",
        },
        resource_labels={"s3.bucket": bucket, "s3.key": key},
        event_id=deterministic_event_id(event, bucket, key, version_id or "", sequencer or etag or ""),
        occurred=occurred,
    )


def batch_to_score(landed: LifecycleEvent) -> LifecycleEvent:
    """The same object announced for batch scoring instead of a drift check (it landed under the scoring prefix)."""
    p = landed.payload
    return batch_landed(p["bucket"], p["key"], p["version_id"], p["sequencer"], p["size"], p["etag"], landed.occurred, BATCH_TO_SCORE)


def batch_scored(model_name: str, version: str, input_uri: str, input_fingerprint: str, output_uri: str, rows: int) -> LifecycleEvent:
    """A batch was scored by ``version``; its predictions are at ``output_uri``."""
    return model_event(
        BATCH_SCORED,
        model_name,
        {"version": str(version), "input_uri": input_uri, "input_fingerprint": input_fingerprint, "output_uri": output_uri, "rows": rows},
        event_id=deterministic_event_id(BATCH_SCORED, model_name, version, input_fingerprint),
    )


def model_promoted(
    model_name: str,
    version: str,
    previous_version: str | None,
    metric: str,
    value: float | None,
    champion_value: float | None,
    approved_by: str,
    reason: str,
    flow_run_url: str,
    audit_key: str,
) -> LifecycleEvent:
    """``champion`` moved to ``version``; ``previous_version`` ("" for a first champion) became ``previous-champion``."""
    return model_event(
        MODEL_PROMOTED,
        model_name,
        {
            "version": str(version),
            "previous_version": str(previous_version or ""),
            "metric": metric,
            "value": value,
            "champion_value": champion_value,
            "approved_by": approved_by,
            "reason": reason,
            "flow_run_url": flow_run_url or "",
            "audit_key": audit_key,
        },
        event_id=deterministic_event_id(MODEL_PROMOTED, model_name, version, audit_key),
    )


def model_rejected(
    model_name: str,
    version: str,
    champion_version: str | None,
    failed_gates: list[str],
    decided_by: str,
    reason: str,
    flow_run_url: str,
    audit_key: str,
) -> LifecycleEvent:
    """A challenger was not promoted: ``failed_gates`` names the gates (empty when a person or a timeout said no)."""
    return model_event(
        MODEL_REJECTED,
        model_name,
        {
            "version": str(version),
            "champion_version": str(champion_version or ""),
            "failed_gates": ",".join(failed_gates),
            "decided_by": decided_by,
            "reason": reason,
            "flow_run_url": flow_run_url or "",
            "audit_key": audit_key,
        },
        event_id=deterministic_event_id(MODEL_REJECTED, model_name, version, audit_key),
    )


def model_rolled_back(
    model_name: str,
    version: str,
    from_version: str,
    reason: str,
    by: str,
    batch_uri: str | None,
    flow_run_url: str,
    audit_key: str,
) -> LifecycleEvent:
    """``champion`` moved back from ``from_version`` to ``version``."""
    return model_event(
        MODEL_ROLLED_BACK,
        model_name,
        {
            "version": str(version),
            "from_version": str(from_version),
            "reason": reason,
            "by": by,
            "batch_uri": batch_uri or "",
            "flow_run_url": flow_run_url or "",
            "audit_key": audit_key,
        },
        event_id=deterministic_event_id(MODEL_ROLLED_BACK, model_name, version, audit_key),
    )


def _drift_payload(model_name: str, version: str, batch_uri: str, result: Any, report_url: str) -> dict[str, Any]:
    return {
        "version": str(version),
        "batch_uri": batch_uri,
        "status": result.status,
        "drift_share": float(result.drift_share),
        "drifted_features": ",".join(result.drifted_features),
        "prediction_drift": bool(result.prediction_drift),
        "report_url": report_url,
    }


def drift_checked(model_name: str, version: str, batch_uri: str, batch_fingerprint: str, result: Any, report_url: str) -> LifecycleEvent:
    """After every check (``result`` is a DriftResult). Same batch and champion -> same id."""
    return model_event(
        DRIFT_CHECKED, model_name, _drift_payload(model_name, version, batch_uri, result, report_url),
        event_id=deterministic_event_id(DRIFT_CHECKED, model_name, version, batch_fingerprint),
    )


def drift_detected(model_name: str, version: str, batch_uri: str, batch_fingerprint: str, result: Any, report_url: str, persistence: str) -> LifecycleEvent:
    """Drift held for K of the last N checks: retraining listens to this."""
    payload = {**_drift_payload(model_name, version, batch_uri, result, report_url), "persistence": persistence}
    return model_event(
        DRIFT_DETECTED, model_name, payload,
        event_id=deterministic_event_id(DRIFT_DETECTED, model_name, version, batch_fingerprint),
    )


def model_degraded(model_name: str, version: str, batch_uri: str, batch_fingerprint: str, performance: Any) -> LifecycleEvent:
    """The champion scored worse than its registered holdout metric by more than the tolerance."""
    return model_event(
        MODEL_DEGRADED,
        model_name,
        {
            "version": str(version),
            "batch_uri": batch_uri,
            "metric": performance.metric,
            "value": float(performance.value),
            "reference_value": float(performance.reference_value),
            "tolerance": float(performance.tolerance),
        },
        event_id=deterministic_event_id(MODEL_DEGRADED, model_name, version, batch_fingerprint),
    )
