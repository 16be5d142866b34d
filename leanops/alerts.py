"""What leanops tells a team in Slack: domain results turned into ``notify.Alert`` s (no sending here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from leanops.notify import Alert
from leanops.results import DriftResult


def model_of_run(parameters: Mapping[str, Any], incoming_prefix: str) -> str:
    """The model a flow run was about, from its parameters: ``spec`` (a model name, or a spec file named
    after its model), else the model folder of an incoming ``key``; "leanops" when neither says."""
    from leanops.monitoring import model_from_key

    spec = str(parameters.get("spec") or "")
    if spec:
        return Path(spec).stem if spec.endswith((".yaml", ".yml")) else spec
    return model_from_key(str(parameters.get("key") or ""), incoming_prefix) or "leanops"


def drift_alert(model: str, version: str, batch_uri: str, result: DriftResult, report_url: str, persistence: str) -> Alert:
    top = ", ".join(f"{f.name} {f.score:.2f}" for f in sorted(result.features, key=lambda f: -(f.score if f.score == f.score else 9))[:5])
    return Alert(
        model=model,
        kind="drift",
        title=f"Drift detected in {batch_uri.rsplit('/', 1)[-1]} against champion v{version}",
        fields=(
            ("Drift share", f"{result.drift_share:.0%} (threshold {result.dataset_drift_share:.0%})"),
            ("Drifted features", ", ".join(result.drifted_features) or "none"),
            ("Top scores", top),
            ("Prediction drift", "yes" if result.prediction_drift else "no"),
            ("Persistence", persistence),
            ("Rows", f"{result.n_current:,}"),
        ),
        links=(("Evidently report", report_url), ("Batch", batch_uri)),
    )


def degraded_alert(model: str, version: str, batch_uri: str, result: DriftResult) -> Alert:
    perf = result.performance
    assert perf is not None
    return Alert(
        model=model,
        kind="degraded",
        title=f"Champion v{version} degraded on {batch_uri.rsplit('/', 1)[-1]}",
        fields=(
            (perf.metric, f"{perf.value:.4f} on the batch vs {perf.reference_value:.4f} at registration"),
            ("Tolerance", f"{perf.tolerance}"),
            ("Labelled rows", f"{perf.n_rows or 0:,}"),
            *((("Recall per class", perf.recall_text),) if perf.per_class_recall else ()),
        ),
        links=(("Batch", batch_uri),),
    )


def failure_alert(model: str, flow_name: str, run_name: str, run_url: str, error: BaseException | None) -> Alert:
    from leanops.errors import ContractViolation

    if isinstance(error, ContractViolation):
        return Alert(
            model=model,
            kind="contract_violation",
            title=f"{flow_name}: batch rejected by its data contract ({len(error.violations)} problems)",
            fields=tuple((f"Problem {i + 1}", v) for i, v in enumerate(error.violations[:8])),
            links=(("Batch", error.uri), ("Flow run", run_url)),
        )
    return Alert(
        model=model,
        kind="run_failed",
        title=f"{flow_name} run {run_name} failed",
        fields=(("Error", f"{type(error).__name__}: {error}"[:500] if error else "unknown"),),
        links=(("Flow run", run_url),),
        topic=flow_name,
    )
