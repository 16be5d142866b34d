"""Promotion and rollback decisions: pure functions of typed inputs.

``decide`` applies a spec's gates to a challenger (and the champion, when there is one) and returns a
``PromotionDecision`` with one ledger line per gate; the approval rules say whether a person must answer
and which recorded answer may be reused. Loading models happens in ``leanops.registry``, moving
aliases in ``leanops.aliases``; the audit trail's entries and tags are ``leanops.audit``; what people
are told is ``leanops.promotion_messages``.
"""

from __future__ import annotations

import math
import time
from datetime import datetime, timezone
from typing import Any, Literal, NamedTuple

import numpy as np
import pandas as pd

from leanops import modeling
from leanops.audit import approval_from_tags, describe_answer, rolled_back_note, utc_now
from leanops.errors import SpecError
from leanops.features import make_target, raw_columns
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
    X = frame.loc[keep, raw_columns(frame, spec)].reset_index(drop=True)
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


def measure_latency(model: Any, X: pd.DataFrame, spec: Spec, repeats: int = 5) -> LatencyResult:
    """The fastest of ``repeats`` batch predictions on ``X``, after one untimed warm-up pass.

    The fastest, not the median: other work on the machine only ever adds time to a pass, so the fastest
    is the closest to the model's own cost. With the median, a promote run on a busy worker rejected a
    model that met its budget (557 ms per 1k rows against 500, seen in a soak round of the e2e tests)."""
    modeling.predict_scores(model, X, spec)
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        modeling.predict_scores(model, X, spec)
        timings.append(time.perf_counter() - started)
    return LatencyResult(n_rows=len(X), seconds=min(timings), repeats=repeats)


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
    latency_repeats: int = 5,
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


def format_value(value: float | None) -> str:
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
            f"{ms:.1f} ms per 1k rows (fastest of {latency.repeats} passes on {latency.n_rows} rows), budget {budget:g}",
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
            gates.append(GateResult("min_primary", primary, value, None, floor, ok, f"{format_value(value)} must be {word} {floor:g}", scores.dataset))
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
    said = describe_answer(answer)
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


def approval_requirement(mode: ApprovalMode, challenger_tags: dict[str, str], ask_again: bool = False) -> tuple[ApprovalMode, str]:
    """The approval a promotion of this challenger needs, and why a person is asked (when one is)."""
    rolled_back = rolled_back_note(challenger_tags)
    if rolled_back:
        return "manual", f"This version was {rolled_back}: it returns only by a person's new decision."
    if ask_again:
        return "manual", "Asked again: earlier answers are not reused."
    return mode, ("Approval is manual for this promotion." if mode == "manual" else "")


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


