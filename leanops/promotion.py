"""Promotion and rollback decisions: pure functions of typed inputs.

``decide`` applies a spec's gates to a challenger (and the champion, when there is one) and returns a
``PromotionDecision`` with one ledger line per gate. Loading models, moving aliases and writing the
audit trail happen elsewhere (``leanops.registry``); this module only computes and formats.
"""

from __future__ import annotations

import json
import math
import statistics
import time
import uuid
from dataclasses import asdict
from datetime import datetime, timezone
from typing import Any, Literal, NamedTuple

import numpy as np
import pandas as pd

from leanops import events, modeling
from leanops.errors import SpecError
from leanops.features import make_target, model_input_columns
from leanops.notify import Alert
from leanops.results import (
    AliasAction,
    AliasChange,
    Approval,
    CandidateMetrics,
    DatasetScores,
    GateResult,
    LatencyResult,
    PromotionDecision,
    RollbackCheck,
    SegmentScore,
    SmokeTestResult,
    combine_fingerprints,
)
from leanops.spec import MetricSpec, PromotionSpec, Spec

ApprovalMode = Literal["auto", "manual"]

HOLDOUT = "holdout"
BATCH = "batch"
# Float noise must not turn "exactly at the tolerance" into a failure.
_EPS = 1e-12

# Version tags written by a promotion decision (the latest one per version) ...
DECISION_TAG = "leanops.promotion.decision"
LEDGER_TAG = "leanops.promotion.ledger"
APPROVED_BY_TAG = "leanops.promotion.approved_by"
REASON_TAG = "leanops.promotion.reason"
DECIDED_AT_TAG = "leanops.promotion.at"
FLOW_RUN_TAG = "leanops.promotion.flow_run_url"
CHAMPION_BEFORE_TAG = "leanops.promotion.champion_before"
ROLLBACK_TAG_PREFIX = "leanops.rollback."
# ... a human's answer, per comparison (a retry of the run that asked reuses it, within the timeout) ...
APPROVAL_TAG_PREFIX = "leanops.approval."
# ... on a version a rollback moved away from: it returns only by a person's new decision ...
ROLLED_BACK_TAG = "leanops.rolled_back"
# ... and the append-only history, one registered-model tag per entry (keys sort in time order).
AUDIT_TAG_PREFIX = "leanops.audit."


# --- evaluation data ----------------------------------------------------------------------------


class EvalData(NamedTuple):
    """One labelled evaluation set: raw model inputs, target, and what it is."""

    name: str
    X: pd.DataFrame
    y: pd.Series
    fingerprint: str


def holdout_data(holdout: pd.DataFrame, spec: Spec, fingerprint: str) -> EvalData:
    """A registered version's holdout (raw model inputs + the target column) as an evaluation set."""
    target = spec.target.name
    if target not in holdout.columns:
        raise SpecError(f"the holdout has no target column {target!r} (columns: {sorted(holdout.columns)})")
    return EvalData(HOLDOUT, holdout.drop(columns=[target]).reset_index(drop=True), holdout[target].reset_index(drop=True), fingerprint)


def batch_data(frame: pd.DataFrame, spec: Spec, fingerprint: str) -> EvalData:
    """A fresh labelled batch (already validated against the contract) as an evaluation set.

    Rows without a target follow the spec's ``on_missing`` rule, exactly as in training."""
    target, keep, _ = make_target(frame, spec)
    X = frame.loc[keep, model_input_columns(spec)].reset_index(drop=True)
    return EvalData(BATCH, X, target.loc[keep].reset_index(drop=True), fingerprint)


def score_dataset(model: Any, data: EvalData, spec: Spec) -> DatasetScores:
    """The spec's metrics (modeling.score, as in training) overall and per segment."""
    column = spec.promotion.segment_column
    if column is not None and column not in data.X.columns:
        raise SpecError(f"promotion.segment_column {column!r} is not a column of the {data.name} data")
    scores = modeling.predict_scores(model, data.X, spec)
    segments = segment_scores(data.X[column], data.y, scores, spec) if column is not None else ()
    return DatasetScores(data.name, len(data.X), modeling.score(data.y, scores, spec), segments, data.fingerprint)


def segment_scores(segment: pd.Series, y: pd.Series, scores: np.ndarray, spec: Spec) -> tuple[SegmentScore, ...]:
    labels = segment.astype("object").where(segment.notna(), "<missing>").map(str).to_numpy()
    y_values = np.asarray(y)
    out = []
    for name in sorted(set(labels)):
        mask = labels == name
        try:
            value: float | None = modeling.score(y_values[mask], scores[mask], spec)[spec.metric.primary]
        except ValueError:
            value = None  # e.g. a single class: the metric is undefined, the gate skips the segment
        out.append(SegmentScore(name, int(mask.sum()), value))
    return tuple(out)


def measure_latency(model: Any, X: pd.DataFrame, spec: Spec, repeats: int = 3) -> LatencyResult:
    """Median time of ``repeats`` batch predictions on ``X`` after one untimed warm-up pass."""
    modeling.predict_scores(model, X, spec)
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        modeling.predict_scores(model, X, spec)
        timings.append(time.perf_counter() - started)
    return LatencyResult(n_rows=len(X), seconds=statistics.median(timings), repeats=repeats)


def check_predictions(model_uri: str, predictions: Any, n_rows: int, spec: Spec) -> SmokeTestResult:
    """Whether a served model's output on its input example looks like predictions of this task."""
    values = np.asarray(predictions, dtype=float)
    if values.ndim == 0 or values.shape[0] != n_rows:
        return SmokeTestResult(model_uri, False, n_rows, f"expected {n_rows} predictions, got shape {values.shape}")
    if not np.isfinite(values).all():
        return SmokeTestResult(model_uri, False, n_rows, "predictions contain NaN or infinite values")
    if spec.is_classifier:
        n_classes = len(spec.target.classes) if spec.task == "multiclass" else 2
        if (values.ndim == 2 and values.shape[1] != n_classes) or (values.ndim == 1 and spec.task == "multiclass"):
            got = values.shape[1] if values.ndim == 2 else 1
            return SmokeTestResult(model_uri, False, n_rows, f"expected {n_classes} class probabilities per row, got {got}")
        if (values < 0).any() or (values > 1).any():
            return SmokeTestResult(model_uri, False, n_rows, "probabilities outside [0, 1]")
        if values.ndim == 2 and not np.allclose(values.sum(axis=1), 1.0, atol=1e-4):
            return SmokeTestResult(model_uri, False, n_rows, "class probabilities of a row do not sum to 1")
    return SmokeTestResult(model_uri, True, n_rows, f"{n_rows} example rows predicted")


def candidate_metrics(
    name: str,
    version: str,
    model: Any,
    data: list[EvalData],
    spec: Spec,
    baseline: dict[str, float] | None = None,
    latency_repeats: int = 3,
) -> CandidateMetrics:
    """Score one loaded model on every evaluation set and time it on the largest one."""
    scores = tuple(score_dataset(model, d, spec) for d in data)
    largest = max(data, key=lambda d: len(d.X))
    return CandidateMetrics(name, version, scores, dict(baseline or {}), latency=measure_latency(model, largest.X, spec, latency_repeats))


def recorded_baseline(run_metrics: dict[str, float]) -> dict[str, float]:
    """The baseline's holdout metrics as training logged them (``baseline_<metric>``)."""
    return {k[len("baseline_"):]: v for k, v in run_metrics.items() if k.startswith("baseline_")}


# --- the gates ----------------------------------------------------------------------------------


def gain(metric_spec: MetricSpec, metric: str, candidate: float, reference: float) -> float:
    """How much better ``candidate`` is than ``reference`` (positive = better), whatever the direction."""
    diff = candidate - reference
    return diff if metric_spec.direction(metric) == "maximize" else -diff


def _toward(metric_spec: MetricSpec, metric: str, reference: float, amount: float) -> float:
    """``reference`` moved ``amount`` in the better direction (negative amount: the worse direction)."""
    return reference + amount if metric_spec.direction(metric) == "maximize" else reference - amount


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def comparison_key(challenger: CandidateMetrics, champion: CandidateMetrics | None) -> str:
    data = sorted(f"{s.dataset}:{s.fingerprint}" for s in challenger.scores)
    return combine_fingerprints(challenger.name, challenger.version, champion.version if champion else "-", *data)


def _technical_gates(challenger: CandidateMetrics, champion: CandidateMetrics | None, policy: PromotionSpec) -> list[GateResult]:
    smoke = challenger.smoke
    gates = [
        GateResult("smoke_test", "", None, None, None, False, "not run")
        if smoke is None
        else GateResult("smoke_test", "", None, None, None, smoke.passed, f"{smoke.model_uri}: {smoke.detail}")
    ]
    latency = challenger.latency
    budget = policy.latency_budget_ms_per_1k_rows
    if latency is None:
        gates.append(GateResult("latency", "ms_per_1k_rows", None, None, budget, False, "not measured"))
    else:
        champion_ms = champion.latency.ms_per_1k_rows if champion and champion.latency else None
        ms = latency.ms_per_1k_rows
        gates.append(GateResult(
            "latency", "ms_per_1k_rows", ms, champion_ms, budget, ms <= budget + _EPS,
            f"{ms:.1f} ms per 1k rows (median of {latency.repeats} passes on {latency.n_rows} rows), budget {budget:g}",
        ))
    return gates


def _absolute_gates(challenger: CandidateMetrics, policy: PromotionSpec, metric_spec: MetricSpec) -> list[GateResult]:
    primary = metric_spec.primary
    gates = []
    if policy.min_primary is not None:
        floor = policy.min_primary
        for scores in challenger.scores:
            value = scores.metrics[primary]
            ok = gain(metric_spec, primary, value, floor) >= -_EPS
            word = "at least" if metric_spec.direction(primary) == "maximize" else "at most"
            gates.append(GateResult("min_primary", primary, value, None, floor, ok, f"{_fmt(value)} must be {word} {floor:g}", scores.dataset))
    if policy.must_beat_baseline:
        holdout = challenger.on(HOLDOUT)
        baseline = challenger.baseline.get(primary)
        if holdout is None or baseline is None:
            gates.append(GateResult("beats_baseline", primary, holdout.metrics[primary] if holdout else None, None, baseline, False,
                                    "no holdout score or no recorded baseline to compare with", HOLDOUT))
        else:
            value = holdout.metrics[primary]
            delta = gain(metric_spec, primary, value, baseline)
            gates.append(GateResult("beats_baseline", primary, value, None, baseline, delta > 0,
                                    f"{delta:+.4f} vs the baseline trained with it", HOLDOUT))
    return gates


def _relative_gates(challenger: CandidateMetrics, champion: CandidateMetrics, policy: PromotionSpec, metric_spec: MetricSpec) -> list[GateResult]:
    primary = metric_spec.primary
    gates = []
    for mine in challenger.scores:
        theirs = champion.on(mine.dataset)
        if theirs is None:
            continue
        ch, cp = mine.metrics[primary], theirs.metrics[primary]
        required = max(policy.min_improvement_abs, policy.min_improvement_rel * abs(cp))
        delta = gain(metric_spec, primary, ch, cp)
        ok = delta >= required - _EPS and delta > 0
        gates.append(GateResult(
            "primary_improvement", primary, ch, cp, _toward(metric_spec, primary, cp, required), ok,
            f"{delta:+.4f} vs champion, needs > 0 and >= {required:.4f} "
            f"(abs {policy.min_improvement_abs:g}, rel {policy.min_improvement_rel:g})",
            mine.dataset,
        ))
        for guardrail in metric_spec.guardrails:
            g_ch, g_cp = mine.metrics[guardrail.name], theirs.metrics[guardrail.name]
            worse_by = -gain(metric_spec, guardrail.name, g_ch, g_cp)
            gates.append(GateResult(
                "guardrail", guardrail.name, g_ch, g_cp, _toward(metric_spec, guardrail.name, g_cp, -guardrail.tolerance),
                worse_by <= guardrail.tolerance + _EPS,
                f"{-worse_by:+.4f} vs champion, tolerance {guardrail.tolerance:g}", mine.dataset,
            ))
        gates += _segment_gates(mine, theirs, policy, metric_spec)
    return gates


def _segment_gates(mine: DatasetScores, theirs: DatasetScores, policy: PromotionSpec, metric_spec: MetricSpec) -> list[GateResult]:
    primary = metric_spec.primary
    gates = []
    for segment in mine.segments:
        gate = f"segment {policy.segment_column}={segment.segment}"
        other = theirs.segment(segment.segment)
        cp = other.value if other else None
        if segment.n_rows < policy.segment_min_rows:
            gates.append(GateResult(gate, primary, segment.value, cp, None, True,
                                    f"not judged: {segment.n_rows} rows < {policy.segment_min_rows}", mine.dataset, skipped=True))
        elif segment.value is None or cp is None:
            gates.append(GateResult(gate, primary, segment.value, cp, None, True,
                                    f"not judged: {primary} undefined on this segment", mine.dataset, skipped=True))
        else:
            worse_by = -gain(metric_spec, primary, segment.value, cp)
            gates.append(GateResult(
                gate, primary, segment.value, cp, _toward(metric_spec, primary, cp, -policy.segment_tolerance),
                worse_by <= policy.segment_tolerance + _EPS,
                f"{-worse_by:+.4f} vs champion on {segment.n_rows} rows, tolerance {policy.segment_tolerance:g}", mine.dataset,
            ))
    return gates


def decide(
    challenger: CandidateMetrics, champion: CandidateMetrics | None, policy: PromotionSpec, metric_spec: MetricSpec
) -> PromotionDecision:
    """Apply every gate; ``promote`` only if none fails. With no champion the absolute gates alone decide."""
    gates = _technical_gates(challenger, champion, policy) + _absolute_gates(challenger, policy, metric_spec)
    if champion is not None:
        gates += _relative_gates(challenger, champion, policy, metric_spec)
    verdict = "reject" if any(not g.passed and not g.skipped for g in gates) else "promote"
    return PromotionDecision(
        model_name=challenger.name,
        challenger_version=challenger.version,
        champion_version=champion.version if champion else None,
        verdict=verdict,
        gates=tuple(gates),
        primary_metric=metric_spec.primary,
        comparison_key=comparison_key(challenger, champion),
    )


# --- approvals ----------------------------------------------------------------------------------


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def approval_mode(policy: PromotionSpec, override: str | None = None) -> ApprovalMode:
    """The spec's approval policy, or the run's override (``auto`` / ``manual``)."""
    mode = override or policy.approval
    if mode not in ("auto", "manual"):
        raise SpecError(f"approval must be 'auto' or 'manual', got {mode!r}")
    return mode  # type: ignore[return-value]


def human_approval(approved: bool, by: str, reason: str) -> Approval:
    return Approval(bool(approved), by=by.strip() or "unnamed approver", reason=reason.strip(), at=utc_now(), source="human")


def policy_approval(decision: PromotionDecision) -> Approval:
    """Automatic approval: the gates' verdict stands."""
    return Approval(decision.verdict == "promote", by="policy:auto", reason="", at=utc_now(), source="policy")


def timeout_approval(timeout_seconds: float) -> Approval:
    return Approval(False, by="timeout", reason=f"no answer within {timeout_seconds:g} s", at=utc_now(), source="timeout")


def approval_tag_key(decision: PromotionDecision) -> str:
    return f"{APPROVAL_TAG_PREFIX}{decision.comparison_key}"


def approval_tag_value(approval: Approval, flow_run_id: str) -> str:
    """A human's answer and the run that asked: only a retry of that run may reuse it."""
    return json.dumps({"approved": approval.approved, "by": approval.by, "reason": approval.reason, "at": approval.at,
                       "flow_run_id": flow_run_id})


def approval_from_tags(decision: PromotionDecision, tags: dict[str, str]) -> tuple[Approval, str] | None:
    """A human's earlier answer to this very comparison and the run that asked for it, if the tags hold one."""
    raw = tags.get(approval_tag_key(decision))
    if not raw:
        return None
    data = json.loads(raw)
    answer = Approval(bool(data["approved"]), data.get("by", ""), data.get("reason", ""), data.get("at", ""), source="recorded")
    return answer, data.get("flow_run_id", "")


def _answer_text(answer: Approval) -> str:
    return f"{'approved' if answer.approved else 'rejected'} by {answer.by} at {answer.at}" + (f" ({answer.reason})" if answer.reason else "")


def reusable_approval(
    decision: PromotionDecision, tags: dict[str, str], flow_run_id: str, timeout_seconds: float,
    ask_again: bool = False, now: datetime | None = None,
) -> tuple[Approval | None, str]:
    """The recorded answer to reuse, and a sentence saying what is reused, or why an earlier answer is not.

    People's answers do not travel: one is reused only by a retry of the run that asked for it, and
    never once the spec's approval timeout has passed since it was given. Anyone can ask again."""
    found = approval_from_tags(decision, tags)
    if found is None:
        return None, ""
    answer, asked_by_run = found
    said = _answer_text(answer)
    if ask_again:
        return None, f"An earlier answer ({said}) is not reused: asked again."
    if not asked_by_run or asked_by_run != flow_run_id:
        return None, f"An earlier answer ({said}) is not reused: it was given to another run (only a retry of that run reuses it)."
    given = _parse_time(answer.at)
    age = ((now or datetime.now(timezone.utc)) - given).total_seconds() if given else math.inf
    if age > timeout_seconds:
        return None, f"An earlier answer ({said}) is not reused: it is older than the approval timeout ({timeout_seconds:g} s)."
    return answer, f"Reused: the answer {said}, given to this run before it was retried."


def _parse_time(value: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def rolled_back_note(tags: dict[str, str]) -> str:
    """"" unless a rollback moved the champion away from this version (what, when and why, if so)."""
    raw = tags.get(ROLLED_BACK_TAG)
    if not raw:
        return ""
    data = json.loads(raw)
    return f"rolled back away from at {data.get('at', '?')} (to v{data.get('to_version', '?')}: {data.get('reason', '')})"


def approval_requirement(mode: ApprovalMode, challenger_tags: dict[str, str], ask_again: bool = False) -> tuple[ApprovalMode, str]:
    """The approval a promotion of this challenger needs, and why a person is asked (when one is)."""
    rolled_back = rolled_back_note(challenger_tags)
    if rolled_back:
        return "manual", f"This version was {rolled_back}: it returns only by a person's new decision."
    if ask_again:
        return "manual", "Asked again: earlier answers are not reused."
    return mode, ("Approval is manual for this promotion." if mode == "manual" else "")


# --- alias moves and the audit trail ------------------------------------------------------------


def plan_alias_move(decision: PromotionDecision, current_champion: str | None) -> AliasAction:
    """What applying ``decision`` does, given the champion read inside the critical section."""
    if current_champion == decision.challenger_version:
        return "noop"
    if current_champion != decision.champion_version:
        return "stale"  # judged against another champion: the comparison no longer holds
    return "promoted" if decision.promote else "rejected"


def trail_explains(history: list[AliasChange], champion: str | None) -> bool:
    """Whether the last alias move in the audit trail put the current champion in place."""
    moves = [c for c in history if c.action in ("promoted", "rolled_back")]
    return (moves[-1].champion_after if moves else None) == champion


def audit_key(at: datetime | None = None) -> str:
    """Sorts in time order; the random suffix keeps two entries of the same microsecond apart."""
    moment = (at or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return f"{moment.strftime('%Y%m%dT%H%M%S.%fZ')}-{uuid.uuid4().hex[:8]}"


def promotion_change(
    decision: PromotionDecision, action: AliasAction, champion_before: str | None, previous_before: str | None, flow_run_url: str = ""
) -> AliasChange:
    moved = action == "promoted"
    approval = decision.approval
    return AliasChange(
        model_name=decision.model_name,
        action=action,
        version=decision.challenger_version,
        champion_before=champion_before,
        champion_after=decision.challenger_version if moved else champion_before,
        previous_champion_after=champion_before if moved and champion_before else previous_before,
        reason=decision.reason if action in ("promoted", "rejected") else _plan_reason(action, decision, champion_before),
        by=approval.by if approval else "gates",
        at=utc_now(),
        flow_run_url=flow_run_url,
        key=audit_key(),
    )


def _plan_reason(action: AliasAction, decision: PromotionDecision, champion_before: str | None) -> str:
    if action == "noop":
        return f"v{decision.challenger_version} already is the champion"
    return (f"judged against champion v{decision.champion_version or 'none'} but the champion is now "
            f"v{champion_before or 'none'}: decide again")


def already_champion(model_name: str, version: str, flow_run_url: str = "") -> AliasChange:
    """Promoting the champion itself: nothing to judge, nothing to move, nothing recorded."""
    return AliasChange(model_name, "noop", str(version), str(version), str(version), None,
                       f"v{version} already is the champion", "promote", utc_now(), flow_run_url, "")


def rollback_change(
    model_name: str, action: AliasAction, target: str, champion_before: str, previous_before: str | None,
    reason: str, by: str, flow_run_url: str = "",
) -> AliasChange:
    moved = action == "rolled_back"
    return AliasChange(
        model_name=model_name,
        action=action,
        version=target,
        champion_before=champion_before,
        champion_after=target if moved else champion_before,
        # A version rolled back from is no candidate to return to automatically.
        previous_champion_after=None if moved else previous_before,
        reason=reason,
        by=by,
        at=utc_now(),
        flow_run_url=flow_run_url,
        key=audit_key(),
    )


def audit_tag(change: AliasChange) -> tuple[str, str]:
    return f"{AUDIT_TAG_PREFIX}{change.key}", json.dumps(asdict(change), sort_keys=True)


def change_from_tag(value: str) -> AliasChange:
    return AliasChange(**json.loads(value))


def decision_tags(decision: PromotionDecision, change: AliasChange) -> dict[str, str]:
    """Version tags of the judged challenger: its latest decision, ledger, approver, time and run."""
    tags = {
        DECISION_TAG: change.action,
        LEDGER_TAG: json.dumps(decision.table()),
        APPROVED_BY_TAG: change.by,
        REASON_TAG: change.reason[:5000],
        DECIDED_AT_TAG: change.at,
        FLOW_RUN_TAG: change.flow_run_url,
        CHAMPION_BEFORE_TAG: change.champion_before or "",
    }
    return tags


def rolled_back_tags(change: AliasChange) -> dict[str, str]:
    """Tags of the version a rollback moved the champion away from (see :func:`approval_requirement`)."""
    return {ROLLED_BACK_TAG: json.dumps({"at": change.at, "to_version": change.version, "reason": change.reason[:2000], "by": change.by})}


def rollback_tags(change: AliasChange) -> dict[str, str]:
    return {
        f"{ROLLBACK_TAG_PREFIX}action": change.action,
        f"{ROLLBACK_TAG_PREFIX}from_version": change.champion_before or "",
        f"{ROLLBACK_TAG_PREFIX}reason": change.reason[:5000],
        f"{ROLLBACK_TAG_PREFIX}by": change.by,
        f"{ROLLBACK_TAG_PREFIX}at": change.at,
        f"{ROLLBACK_TAG_PREFIX}flow_run_url": change.flow_run_url,
    }


# --- rollback -----------------------------------------------------------------------------------


def rollback_check(current: DatasetScores, previous: DatasetScores, current_version: str, previous_version: str,
                   metric_spec: MetricSpec, batch_uri: str) -> RollbackCheck:
    """Whether the previous champion scores better than the current one on the degrading batch."""
    primary = metric_spec.primary
    cur, prev = current.metrics[primary], previous.metrics[primary]
    return RollbackCheck(primary, batch_uri, current.n_rows, current_version, cur, previous_version, prev,
                         gain(metric_spec, primary, prev, cur) > 0)


def rollback_reason(check: RollbackCheck | None, reason: str) -> str:
    parts = [reason] if reason else []
    if check is not None:
        word = "better" if check.previous_is_better else "not better"
        parts.append(
            f"on {check.batch_uri} ({check.n_rows} rows) v{check.previous_version} scores {check.metric} "
            f"{check.previous_value:.4f} vs v{check.current_version} {check.current_value:.4f}: {word}"
        )
    return "; ".join(parts) or "rolled back by hand"


# --- presentation -------------------------------------------------------------------------------


def ledger_text(decision: PromotionDecision, max_rows: int = 30) -> str:
    """The ledger as fixed-width text (chat messages have no tables)."""
    rows = [("gate", "data", "metric", "challenger", "champion", "threshold", "result")]
    for g in decision.gates[:max_rows]:
        rows.append((g.gate, g.dataset, g.metric, _fmt(g.challenger), _fmt(g.champion), _fmt(g.threshold), g.status))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    if len(decision.gates) > max_rows:
        lines.append(f"... {len(decision.gates) - max_rows} more gates")
    return "\n".join(lines)


def format_history(changes: list[AliasChange]) -> str:
    """Who was champion when, and why: one line per entry of the audit trail, oldest first."""
    if not changes:
        return "no alias changes recorded"
    rows = [("when (UTC)", "action", "version", "champion", "previous-champion", "by", "why")]
    def v(version: str | None) -> str:
        return f"v{version}" if version else "none"

    for c in changes:
        champion = f"{v(c.champion_before)} -> {v(c.champion_after)}" if c.champion_before != c.champion_after else v(c.champion_after)
        rows.append((c.at, c.action, v(c.version), champion, v(c.previous_champion_after), c.by, c.reason))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1] for row in rows)


# --- events and messages ------------------------------------------------------------------------


def _primary_on_holdout(decision: PromotionDecision, side: str) -> float | None:
    for g in decision.gates:
        if g.gate == "primary_improvement" and g.dataset == HOLDOUT:
            return g.challenger if side == "challenger" else g.champion
    for g in decision.gates:
        if g.metric == decision.primary_metric and g.challenger is not None and side == "challenger":
            return g.challenger
    return None


def outcome_event(decision: PromotionDecision, change: AliasChange) -> events.LifecycleEvent | None:
    """``leanops.model.promoted`` / ``rejected`` for a recorded decision; None for a no-op."""
    if change.action == "promoted":
        return events.model_promoted(
            change.model_name, change.version, change.champion_before, decision.primary_metric,
            _primary_on_holdout(decision, "challenger"), _primary_on_holdout(decision, "champion"),
            change.by, change.reason, change.flow_run_url, change.key,
        )
    if change.action == "rejected":
        return events.model_rejected(
            change.model_name, change.version, change.champion_before, [g.label for g in decision.failed_gates],
            change.by, change.reason, change.flow_run_url, change.key,
        )
    return None


def rollback_event(change: AliasChange, batch_uri: str | None) -> events.LifecycleEvent | None:
    if change.action != "rolled_back":
        return None
    return events.model_rolled_back(
        change.model_name, change.version, change.champion_before or "", change.reason, change.by, batch_uri,
        change.flow_run_url, change.key,
    )


def _ledger_field(decision: PromotionDecision) -> tuple[str, str]:
    return ("Ledger", "```" + ledger_text(decision, max_rows=20)[:1900] + "```")


def approval_form_text(decision: PromotionDecision, timeout_seconds: float, why_asked: str = "", earlier: str = "") -> str:
    """The description above the Resume form: the decision, why a person is asked, what is (not) reused."""
    notes = [why_asked, earlier,
             f"Your answer is recorded on v{decision.challenger_version} and reused only if this same run is retried "
             f"within {timeout_seconds:g} s; any other promotion asks again."]
    return decision.markdown() + "\n\n" + "\n\n".join(f"> {note}" for note in notes if note)


def approval_request_alert(
    decision: PromotionDecision, flow_run_url: str, timeout_seconds: float, why_asked: str = "", earlier: str = ""
) -> Alert:
    against = f"replace v{decision.champion_version}" if decision.champion_version else "become the first champion"
    # One dedup key per challenger: a later request must never be swallowed by an earlier one's cooldown.
    return Alert(
        model=decision.model_name,
        kind=f"approval-v{decision.challenger_version}",
        title=f"v{decision.challenger_version} passed its gates and awaits approval to {against}",
        fields=(
            ("Gates", decision.reason),
            *((("Why a person", why_asked),) if why_asked else ()),
            *((("Earlier answer", earlier),) if earlier else ()),
            ("Answer within", f"{timeout_seconds:g} s (no answer = rejected)"),
            _ledger_field(decision),
        ),
        links=(("Approve or reject (Resume in Prefect)", flow_run_url),) if flow_run_url else (),
    )


def decision_alert(decision: PromotionDecision, change: AliasChange, model_url: str = "") -> Alert | None:
    if change.action == "promoted":
        was = f" (was v{change.champion_before})" if change.champion_before else " (first champion)"
        kind, title = "promotion", f"v{change.version} promoted to champion{was}"
    elif change.action == "rejected":
        kind, title = "rejected", f"v{change.version} rejected; champion stays v{change.champion_before or 'none'}"
    else:
        return None
    links = tuple((label, url) for label, url in (("Flow run", change.flow_run_url), ("Model version", model_url)) if url)
    approval = decision.approval
    reused = ((("Answer", f"Reused: the answer {_answer_text(approval)}, given to this run before it was retried"),)
              if approval is not None and approval.source == "recorded" else ())
    return Alert(decision.model_name, kind, title,
                 (("Decided by", change.by), *reused, ("Why", change.reason), _ledger_field(decision)), links)


def nothing_to_roll_back_to(model_name: str, champion: str, reason: str, by: str, flow_run_url: str = "") -> AliasChange:
    """A rollback asked for (e.g. by a degradation) when there is no previous champion: the champion stays,
    and the people who must act are told why. Not an audit entry: no alias moved."""
    why = (f"{reason + '; ' if reason else ''}there is no previous-champion to roll back to (v{champion} is the first "
           "champion, or an earlier rollback already used it): retrain, or roll back to a chosen version (to_version)")
    return AliasChange(model_name, "kept", str(champion), str(champion), str(champion), None, why, by, utc_now(), flow_run_url, "")


def rollback_alert(change: AliasChange) -> Alert | None:
    if change.action == "rolled_back":
        title = f"champion rolled back from v{change.champion_before} to v{change.version}"
    elif change.action == "kept" and change.version == change.champion_before:
        title = f"nothing to roll back to: champion v{change.champion_before} stays"
    elif change.action == "kept":
        title = f"rollback to v{change.version} not done: champion v{change.champion_before} kept"
    else:
        return None
    links = (("Flow run", change.flow_run_url),) if change.flow_run_url else ()
    return Alert(change.model_name, "rollback", title, (("Why", change.reason), ("By", change.by)), links)
