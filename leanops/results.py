"""Typed results passed between lifecycle stages.

Every result that carries data also carries a ``fingerprint``: a short content hash that
identifies it. Cache keys are built from fingerprints, never from the data itself.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd


def combine_fingerprints(*parts: object) -> str:
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()
    return digest[:16]


@dataclass(frozen=True)
class BatchIdentity:
    """Which batch a URI names now, known without reading it: from the objects' ETags (S3) or stat
    (local files), see :func:`leanops.storage.object_identity`. Equal identities mean equal content;
    it is a change detector for cache decisions, never recorded as the data's lineage fingerprint."""

    uri: str
    identity: str


@dataclass(frozen=True)
class Batch:
    uri: str
    fingerprint: str
    """The content fingerprint (SHA-256 of the bytes read), what lineage records."""
    frame: pd.DataFrame = field(repr=False, compare=False)
    sources: tuple[str, ...] = ()
    """The object URIs a batch was assembled from (a retrain window), in order."""
    identity: str = ""
    """The :class:`BatchIdentity` ``identity`` of what was read ("" if unknown)."""

    @property
    def n_rows(self) -> int:
        return len(self.frame)


@dataclass(frozen=True)
class ValidationReport:
    uri: str
    fingerprint: str
    n_rows: int
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class FeatureSet:
    fingerprint: str
    X_train: pd.DataFrame = field(repr=False, compare=False)
    y_train: pd.Series = field(repr=False, compare=False)
    X_valid: pd.DataFrame = field(repr=False, compare=False)
    y_valid: pd.Series = field(repr=False, compare=False)
    X_holdout: pd.DataFrame = field(repr=False, compare=False)
    y_holdout: pd.Series = field(repr=False, compare=False)
    rows_excluded: dict[str, int] = field(default_factory=dict)
    split_description: str = ""
    row_counts: dict[str, int] | None = None
    """The split's sizes when X_train / X_valid hold a sample of them (training on a cluster)."""

    @property
    def sizes(self) -> dict[str, int]:
        if self.row_counts is not None:
            return dict(self.row_counts)
        return {"train": len(self.X_train), "valid": len(self.X_valid), "holdout": len(self.X_holdout)}


@dataclass(frozen=True)
class TrainResult:
    fingerprint: str
    model: Any = field(repr=False, compare=False)
    baseline: Any = field(repr=False, compare=False)
    params: dict[str, Any] = field(default_factory=dict)
    feature_importance: dict[str, float] = field(default_factory=dict)
    fit_seconds: float = 0.0
    best_iteration: int | None = None


@dataclass(frozen=True)
class EvalResult:
    primary_metric: str
    model: dict[str, float]
    baseline: dict[str, float]
    champion: dict[str, float] | None = None
    champion_version: str | None = None
    holdout_rows: int = 0

    def table(self) -> list[dict[str, Any]]:
        rows = []
        for metric in self.model:
            row = {"metric": metric, "model": round(self.model[metric], 5), "baseline": round(self.baseline[metric], 5)}
            if self.champion is not None:
                row[f"champion v{self.champion_version}"] = round(self.champion.get(metric, float("nan")), 5)
            rows.append(row)
        return rows


@dataclass(frozen=True)
class TuningResult:
    study_name: str
    best_params: dict[str, Any]
    best_value: float
    default_value: float | None
    n_trials: int
    n_complete: int
    n_failed: int
    n_pruned: int
    mlflow_run_id: str | None = None
    report_uris: dict[str, str] = field(default_factory=dict)
    metric: str = ""
    direction: str = ""
    best_trial: int | None = None
    n_running: int = 0
    """Trials still running or waiting (another worker's, or a crashed worker's on journal storage)."""
    storage: str = ""
    """Where the study lives (password redacted)."""
    trials: pd.DataFrame | None = field(default=None, repr=False, compare=False)
    report_html: str = field(default="", repr=False, compare=False)
    """Self-contained HTML (history, importances, learning curves, trials), readable offline."""

    @property
    def improvement(self) -> float | None:
        """How much better than the default parameters on the validation split (positive = better)."""
        if self.default_value is None:
            return None
        diff = self.best_value - self.default_value
        return diff if self.direction != "minimize" else -diff


@dataclass(frozen=True)
class ParamsChoice:
    """Which parameters a retrain trains with after tuning, and why."""

    params: dict[str, Any] | None
    """The tuned parameters, or None: the spec's own."""
    study_name: str
    explanation: str

    @property
    def tuned(self) -> bool:
        return self.params is not None


@dataclass(frozen=True)
class StudyPlan:
    """A study ready for workers: what is left of the budget, split into one share per worker."""

    study_name: str
    storage: str | None
    """As given (None: each worker uses its settings' storage), so no password travels in results."""
    target_trials: int
    finished_trials: int
    shares: tuple[int, ...]

    @property
    def remaining(self) -> int:
        return sum(self.shares)


@dataclass(frozen=True)
class TrialBatchResult:
    """What one tuning worker did."""

    study_name: str
    worker_index: int
    n_trials: int
    n_complete: int
    n_failed: int
    n_pruned: int
    seconds: float


RETRAIN_KEY_TAG_PREFIX = "leanops.retrain_key."
"""A version answers to a retrain key K by a tag ``leanops.retrain_key.K`` (value: the data identity): one tag
per identity it was reached by, so the same content under two identities (re-uploaded, copied) finds it under both."""


def retrain_key_tag(retrain_key: str) -> str:
    return RETRAIN_KEY_TAG_PREFIX + retrain_key


@dataclass(frozen=True)
class Lineage:
    git_commit: str
    data_uri: str
    data_fingerprint: str
    spec_hash: str
    leanops_version: str
    flow_run_id: str | None = None
    data_sources: tuple[str, ...] = ()
    tuning_study: str | None = None
    """The Optuna study run before training (its MLflow run holds the trials), if any."""
    params_choice: str = ""
    """Why the model trained with tuned or with the spec's parameters."""
    data_identity: str = ""
    """The batch's storage identity (ETags / stat) when it was read: not content, a lookup aid."""
    retrain_key: str = ""
    """What a rerun on the same batch identity, spec and code looks the version up by, before reading anything."""

    def as_tags(self) -> dict[str, str]:
        tags = {
            "leanops.git_commit": self.git_commit,
            "leanops.data_uri": self.data_uri,
            "leanops.data_fingerprint": self.data_fingerprint,
            "leanops.spec_hash": self.spec_hash,
            "leanops.version": self.leanops_version,
            "leanops.flow_run_id": self.flow_run_id or "",
        }
        if self.data_sources:
            tags["leanops.data_sources"] = ",".join(self.data_sources)[:4900]
        if self.data_identity:
            tags["leanops.data_identity"] = self.data_identity
        if self.retrain_key:
            tags[retrain_key_tag(self.retrain_key)] = self.data_identity
        if self.tuning_study:
            tags["leanops.tuning_study"] = self.tuning_study
            tags["leanops.params_choice"] = self.params_choice[:4900]
        return tags


@dataclass(frozen=True)
class RegistrationResult:
    model_name: str
    version: str
    run_id: str
    model_uri: str
    created: bool
    """False when an identical training (same data, spec, params, code) was already registered."""
    run_url: str = ""
    alias: str = "challenger"
    train_rows: int | None = None
    """Rows the version trained on, when the registry was asked (for the training-size gate of a rerun)."""


# --- drift monitoring ---------------------------------------------------------------------------


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    """A GitHub-flavoured markdown table (Prefect artifacts and Slack-free summaries render it)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join("" if cell is None else str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


DriftStatus = Literal["ok", "drift", "inconclusive"]
"""``"ok"``, ``"drift"`` or ``"inconclusive"`` (too few rows to judge: never counts as drift)."""


@dataclass(frozen=True)
class FeatureDrift:
    name: str
    kind: str
    """``"numeric"`` or ``"categorical"``, from the spec (never inferred from dtypes)."""
    method: str
    """``"wasserstein"`` (normed by the reference std), ``"jensenshannon"`` or ``"psi"``."""
    score: float
    """Effect size; NaN when one side has no values at all (then ``drifted`` is True and ``note`` says why)."""
    threshold: float
    drifted: bool
    note: str = ""


@dataclass(frozen=True)
class PerformanceCheck:
    metric: str
    value: float
    """The champion's metric on the labelled batch."""
    reference_value: float
    """The champion's registered holdout metric."""
    direction: str
    tolerance: float
    degraded: bool
    n_rows: int | None = None
    per_class_recall: dict[str, float] = field(default_factory=dict)
    """Classifiers: the share of each class's labelled rows predicted as that class (which classes it stopped finding)."""

    @property
    def recall_text(self) -> str:
        return ", ".join(f"{name} {value:.2f}" for name, value in self.per_class_recall.items())

    @property
    def delta(self) -> float:
        """How much better (positive) or worse (negative) than the reference, whatever the direction."""
        diff = self.value - self.reference_value
        return diff if self.direction == "maximize" else -diff


@dataclass(frozen=True)
class DriftResult:
    status: DriftStatus
    n_reference: int
    n_current: int
    n_reference_sampled: int
    n_current_sampled: int
    features: tuple[FeatureDrift, ...]
    drift_share: float
    """Share of features that drifted, importance-weighted when ``weighted``."""
    dataset_drift_share: float
    """The spec's threshold on ``drift_share``."""
    dataset_drift: bool
    drifted_features: tuple[str, ...]
    weighted: bool = False
    engine: str = "fast"
    reason: str = ""
    """Why the status is what it is, in one sentence (always set for ``inconclusive``)."""
    prediction_drift_score: float | None = None
    prediction_drift_threshold: float | None = None
    prediction_drift: bool | None = None
    performance: PerformanceCheck | None = None
    unknown_categories: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Per categorical feature: values of the current batch never seen in the reference."""
    skipped_features: tuple[str, ...] = ()
    """Spec features absent from both frames (derived features when callers pass raw columns)."""
    report_html_uri: str | None = None
    report_json_uri: str | None = None

    @property
    def performance_degraded(self) -> bool:
        return bool(self.performance and self.performance.degraded)

    def with_performance(self, performance: PerformanceCheck) -> "DriftResult":
        from dataclasses import replace

        return replace(self, performance=performance)

    def with_report(self, html_uri: str | None, json_uri: str | None) -> "DriftResult":
        from dataclasses import replace

        return replace(self, report_html_uri=html_uri, report_json_uri=json_uri)

    def table(self) -> list[dict[str, Any]]:
        """One row per feature: drifted first, then by score (NaN scores, i.e. missing sides, first)."""
        def order(f: FeatureDrift) -> tuple[bool, float]:
            score = float("inf") if f.score != f.score else f.score
            return (not f.drifted, -score)

        return [
            {
                "feature": f.name,
                "kind": f.kind,
                "method": f.method,
                "score": round(f.score, 4) if f.score == f.score else None,
                "threshold": f.threshold,
                "drifted": f.drifted,
                **({"note": f.note} if f.note else {}),
            }
            for f in sorted(self.features, key=order)
        ]

    def summary_markdown(self) -> str:
        share = f"{self.drift_share:.0%}" + (" (importance-weighted)" if self.weighted else "")
        lines = [
            f"**Drift status: {self.status}**" + (f" ({self.reason})" if self.reason else ""),
            "",
            f"- rows: reference {self.n_reference:,} (sampled {self.n_reference_sampled:,}), "
            f"current {self.n_current:,} (sampled {self.n_current_sampled:,})",
            f"- drifted features: {len(self.drifted_features)} of {len(self.features)}, share {share}, "
            f"dataset drift at >= {self.dataset_drift_share:.0%}: {'yes' if self.dataset_drift else 'no'}",
        ]
        if self.prediction_drift_score is not None:
            lines.append(
                f"- prediction drift: score {self.prediction_drift_score:.4f} vs threshold "
                f"{self.prediction_drift_threshold}: {'yes' if self.prediction_drift else 'no'}"
            )
        if self.performance is not None:
            p = self.performance
            lines.append(
                f"- {p.metric} on the labelled batch: {p.value:.4f} vs holdout {p.reference_value:.4f} "
                f"(tolerance {p.tolerance}): {'DEGRADED' if p.degraded else 'ok'}"
            )
            if p.per_class_recall:
                lines.append(f"- recall per class on the labelled batch: {p.recall_text}")
        unknown = {k: v for k, v in self.unknown_categories.items() if v}
        if unknown:
            listed = "; ".join(f"{k}: {', '.join(v[:10])}{' ...' if len(v) > 10 else ''}" for k, v in unknown.items())
            lines.append(f"- categories unseen in the reference: {listed}")
        if self.skipped_features:
            lines.append(f"- not checked (absent from both frames): {', '.join(self.skipped_features)}")
        if self.features:
            rows = [
                [r["feature"], r["kind"], r["method"], "n/a" if r["score"] is None else f"{r['score']:.4f}", r["threshold"],
                 "**yes**" if r["drifted"] else "no"]
                for r in self.table()
            ]
            lines += ["", markdown_table(["feature", "kind", "method", "score", "threshold", "drifted"], rows)]
        if self.report_html_uri:
            lines += ["", f"Report: {self.report_html_uri}"]
        return "\n".join(lines)


@dataclass(frozen=True)
class DriftPersistence:
    """Whether drift held in at least ``k`` of the last ``n`` conclusive checks of a model."""

    model: str
    k: int
    n: int
    checks_considered: int
    drift_checks: int
    persists: bool


# --- promotion and rollback ---------------------------------------------------------------------

Verdict = Literal["promote", "reject"]
AliasAction = Literal["promoted", "rejected", "noop", "stale", "rolled_back", "kept"]
"""What a promotion or rollback did: ``stale`` means the champion changed while the decision was
being made (nothing moved, decide again); ``kept`` means a conditional rollback left the champion."""


@dataclass(frozen=True)
class SegmentScore:
    segment: str
    n_rows: int
    value: float | None
    """The primary metric on the segment's rows; None when it cannot be computed (a single class)."""


@dataclass(frozen=True)
class DatasetScores:
    """One model's metrics on one evaluation set (``holdout`` or ``batch``)."""

    dataset: str
    n_rows: int
    metrics: dict[str, float]
    segments: tuple[SegmentScore, ...] = ()
    fingerprint: str = ""
    """What the data was (the holdout's run id, the batch's content hash): part of the comparison key."""

    def segment(self, name: str) -> SegmentScore | None:
        return next((s for s in self.segments if s.segment == name), None)


@dataclass(frozen=True)
class SmokeTestResult:
    """Loading ``models:/<name>/<version>`` as served and predicting on its logged input example."""

    model_uri: str
    passed: bool
    n_rows: int = 0
    detail: str = ""


@dataclass(frozen=True)
class LatencyResult:
    """Batch inference time of the loaded model (median of ``repeats`` timed passes)."""

    n_rows: int
    seconds: float
    repeats: int

    @property
    def ms_per_1k_rows(self) -> float:
        return 1_000_000.0 * self.seconds / max(self.n_rows, 1)


@dataclass(frozen=True)
class CandidateMetrics:
    """Everything the promotion gates judge about one model version."""

    name: str
    version: str
    scores: tuple[DatasetScores, ...]
    baseline: dict[str, float] = field(default_factory=dict)
    """The version's baseline model on its own holdout, as recorded at training."""
    smoke: SmokeTestResult | None = None
    latency: LatencyResult | None = None

    def on(self, dataset: str) -> DatasetScores | None:
        return next((s for s in self.scores if s.dataset == dataset), None)


@dataclass(frozen=True)
class GateResult:
    """One line of a promotion ledger."""

    gate: str
    metric: str
    challenger: float | None
    champion: float | None
    threshold: float | None
    """The value the challenger had to reach (at least for maximised metrics, at most for minimised ones)."""
    passed: bool
    detail: str = ""
    dataset: str = ""
    skipped: bool = False
    """Not judged (e.g. a segment with too few rows): never fails a decision."""

    @property
    def status(self) -> str:
        return "skipped" if self.skipped else ("pass" if self.passed else "FAIL")

    @property
    def label(self) -> str:
        return f"{self.gate}[{self.dataset}]" if self.dataset else self.gate


@dataclass(frozen=True)
class Approval:
    approved: bool
    by: str
    reason: str = ""
    at: str = ""
    source: Literal["policy", "human", "timeout", "recorded"] = "policy"


@dataclass(frozen=True)
class PromotionDecision:
    model_name: str
    challenger_version: str
    champion_version: str | None
    verdict: Verdict
    """What the gates say; the approval may still turn a ``promote`` into a rejection."""
    gates: tuple[GateResult, ...]
    primary_metric: str
    comparison_key: str
    """Which versions on which data were compared: a recorded approval applies to this key only."""
    approval: Approval | None = None

    @property
    def promote(self) -> bool:
        return self.verdict == "promote" and self.approval is not None and self.approval.approved

    @property
    def failed_gates(self) -> tuple[GateResult, ...]:
        return tuple(g for g in self.gates if not g.passed and not g.skipped)

    @property
    def reason(self) -> str:
        if self.failed_gates:
            return "failed gates: " + "; ".join(f"{g.label} ({g.detail})" if g.detail else g.label for g in self.failed_gates)
        judged = sum(1 for g in self.gates if not g.skipped)
        gates = f"all {judged} gates passed"
        if self.approval is None:
            return gates
        verb = "approved" if self.approval.approved else "rejected"
        why = f": {self.approval.reason}" if self.approval.reason else ""
        return f"{gates}; {verb} by {self.approval.by}{why}"

    def with_approval(self, approval: Approval) -> "PromotionDecision":
        from dataclasses import replace

        return replace(self, approval=approval)

    def table(self) -> list[dict[str, Any]]:
        def fmt(value: float | None) -> float | None:
            return None if value is None else round(value, 5)

        return [
            {
                "gate": g.gate,
                "data": g.dataset,
                "metric": g.metric,
                "challenger": fmt(g.challenger),
                "champion": fmt(g.champion),
                "threshold": fmt(g.threshold),
                "result": g.status,
                "detail": g.detail,
            }
            for g in self.gates
        ]

    def markdown(self) -> str:
        against = f"champion v{self.champion_version}" if self.champion_version else "no champion (absolute gates only)"
        gates = "PASS: promote" if self.verdict == "promote" else "FAIL: reject"
        lines = [
            f"## {self.model_name}: challenger v{self.challenger_version} vs {against}",
            "",
            f"**Gates: {gates}**. {self.reason}",
            "",
            "| gate | data | metric | challenger | champion | threshold | result | detail |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in self.table():
            cells = ["" if row[k] is None else str(row[k]) for k in ("gate", "data", "metric", "challenger", "champion", "threshold", "result", "detail")]
            if row["result"] == "FAIL":
                cells[6] = "**FAIL**"
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)


@dataclass(frozen=True)
class AliasChange:
    """One entry of a model's alias history: a promotion, a rejection or a rollback, and why."""

    model_name: str
    action: AliasAction
    version: str
    """The version judged: the challenger of a promotion, the target of a rollback."""
    champion_before: str | None
    champion_after: str | None
    previous_champion_after: str | None
    reason: str
    by: str
    at: str
    """ISO 8601 UTC."""
    flow_run_url: str = ""
    key: str = ""
    """Unique, time-ordered id of the entry in the audit trail."""


@dataclass(frozen=True)
class RollbackCheck:
    """Current vs previous champion on the batch that showed the degradation."""

    metric: str
    batch_uri: str
    n_rows: int
    current_version: str
    current_value: float
    previous_version: str
    previous_value: float
    previous_is_better: bool


@dataclass(frozen=True)
class MonitorOutcome:
    """What one drift-monitor run concluded."""

    model: str
    batch_uri: str
    status: str
    """no_champion | ok | drift | inconclusive"""
    champion_version: str | None = None
    drift: "DriftResult | None" = None
    drift_detected: bool = False
    """Drift held for K of the last N checks: a leanops.drift.detected event was emitted."""
    degraded: bool = False
