"""promotion.decide and its helpers, alone: no registry, no Prefect."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from leanops import audit, promotion, promotion_messages
from leanops.results import (
    AliasChange,
    Approval,
    CandidateMetrics,
    DatasetScores,
    LatencyResult,
    SegmentScore,
    SmokeTestResult,
)
from leanops.spec import GuardrailSpec, MetricSpec, PromotionSpec

AUC = MetricSpec(primary="roc_auc", guardrails=[GuardrailSpec(name="log_loss", tolerance=0.01)])
RMSE = MetricSpec(primary="rmse", guardrails=[GuardrailSpec(name="mae", tolerance=0.5)])
LENIENT = PromotionSpec(must_beat_baseline=True, min_primary=None)


def candidate(
    version: str,
    auc: float = 0.70,
    log_loss: float = 0.50,
    baseline_auc: float = 0.60,
    segments: tuple[SegmentScore, ...] = (),
    batch: dict[str, float] | None = None,
    smoke: bool | None = True,
    ms_per_1k: float = 5.0,
    holdout_fingerprint: str = "run-1",
) -> CandidateMetrics:
    scores = [DatasetScores("holdout", 1000, {"roc_auc": auc, "log_loss": log_loss, "pr_auc": 0.4}, segments, holdout_fingerprint)]
    if batch is not None:
        scores.append(DatasetScores("batch", 800, batch, (), "batch-fp"))
    return CandidateMetrics(
        name="flights",
        version=version,
        scores=tuple(scores),
        baseline={"roc_auc": baseline_auc, "log_loss": 0.6},
        smoke=None if smoke is None else SmokeTestResult(f"models:/flights/{version}", smoke, 5, "ok" if smoke else "load failed"),
        latency=LatencyResult(n_rows=1000, seconds=ms_per_1k / 1000.0, repeats=3),
    )


def failed(decision) -> set[str]:
    return {g.label for g in decision.failed_gates}


def gate(decision, label: str):
    return next(g for g in decision.gates if g.label == label)


# --- verdicts -------------------------------------------------------------------------------------


def test_a_better_challenger_passes_every_gate():
    decision = promotion.decide(candidate("2", auc=0.72, log_loss=0.49), candidate("1", auc=0.70), LENIENT, AUC)
    assert decision.verdict == "promote"
    assert decision.failed_gates == ()
    assert decision.champion_version == "1"
    improvement = gate(decision, "primary_improvement[holdout]")
    assert (improvement.challenger, improvement.champion, improvement.passed) == (0.72, 0.70, True)


def test_a_worse_challenger_is_rejected_and_the_failing_gate_is_named():
    decision = promotion.decide(candidate("2", auc=0.68), candidate("1", auc=0.70), LENIENT, AUC)
    assert decision.verdict == "reject"
    assert failed(decision) == {"primary_improvement[holdout]"}
    assert "primary_improvement[holdout]" in decision.reason


def test_a_tie_is_not_an_improvement():
    decision = promotion.decide(candidate("2", auc=0.70), candidate("1", auc=0.70), LENIENT, AUC)
    assert failed(decision) == {"primary_improvement[holdout]"}


def test_without_a_champion_the_absolute_gates_alone_decide():
    policy = PromotionSpec(min_primary=0.65, must_beat_baseline=True)
    decision = promotion.decide(candidate("1", auc=0.70), None, policy, AUC)
    assert decision.verdict == "promote"
    assert decision.champion_version is None
    assert {g.gate for g in decision.gates} == {"smoke_test", "latency", "min_primary", "beats_baseline"}


def test_without_a_champion_a_challenger_below_the_floor_is_rejected():
    decision = promotion.decide(candidate("1", auc=0.62), None, PromotionSpec(min_primary=0.65), AUC)
    assert failed(decision) == {"min_primary[holdout]"}
    assert gate(decision, "min_primary[holdout]").threshold == 0.65


def test_a_challenger_that_does_not_beat_its_baseline_is_rejected():
    decision = promotion.decide(candidate("1", auc=0.61, baseline_auc=0.63), None, LENIENT, AUC)
    assert failed(decision) == {"beats_baseline[holdout]"}


def test_the_baseline_gate_can_be_switched_off():
    decision = promotion.decide(candidate("1", auc=0.61, baseline_auc=0.63), None, PromotionSpec(must_beat_baseline=False), AUC)
    assert decision.verdict == "promote"
    assert "beats_baseline" not in {g.gate for g in decision.gates}


def test_a_missing_baseline_fails_the_gate_rather_than_passing_silently():
    challenger = candidate("1")
    challenger = CandidateMetrics(challenger.name, challenger.version, challenger.scores, {}, challenger.smoke, challenger.latency)
    decision = promotion.decide(challenger, None, LENIENT, AUC)
    assert failed(decision) == {"beats_baseline[holdout]"}


# --- margins and guardrails -----------------------------------------------------------------------


def test_the_absolute_margin_is_required():
    policy = PromotionSpec(min_improvement_abs=0.01)
    assert promotion.decide(candidate("2", auc=0.705), candidate("1", auc=0.70), policy, AUC).verdict == "reject"
    passing = promotion.decide(candidate("2", auc=0.711), candidate("1", auc=0.70), policy, AUC)
    assert passing.verdict == "promote"
    assert gate(passing, "primary_improvement[holdout]").threshold == pytest.approx(0.71)


def test_the_relative_margin_scales_with_the_champion():
    policy = PromotionSpec(min_improvement_rel=0.01)  # 1% of 0.70 = 0.007
    assert failed(promotion.decide(candidate("2", auc=0.705), candidate("1", auc=0.70), policy, AUC)) == {"primary_improvement[holdout]"}
    assert promotion.decide(candidate("2", auc=0.708), candidate("1", auc=0.70), policy, AUC).verdict == "promote"


def test_the_larger_of_both_margins_applies():
    policy = PromotionSpec(min_improvement_abs=0.002, min_improvement_rel=0.02)  # 0.014 on 0.70
    decision = promotion.decide(candidate("2", auc=0.71), candidate("1", auc=0.70), policy, AUC)
    assert gate(decision, "primary_improvement[holdout]").threshold == pytest.approx(0.714)
    assert decision.verdict == "reject"


def test_a_guardrail_may_regress_within_its_tolerance_only():
    champion = candidate("1", auc=0.70, log_loss=0.50)
    within = promotion.decide(candidate("2", auc=0.72, log_loss=0.509), champion, LENIENT, AUC)
    assert within.verdict == "promote"
    at_the_edge = promotion.decide(candidate("2", auc=0.72, log_loss=0.51), champion, LENIENT, AUC)
    assert at_the_edge.verdict == "promote"
    beyond = promotion.decide(candidate("2", auc=0.72, log_loss=0.52), champion, LENIENT, AUC)
    assert failed(beyond) == {"guardrail[holdout]"}
    line = gate(beyond, "guardrail[holdout]")
    assert (line.metric, line.threshold) == ("log_loss", pytest.approx(0.51))


def test_minimised_metrics_count_lower_as_better():
    def reg(version, rmse, mae, baseline_rmse=20.0):
        return CandidateMetrics(
            "delays", version, (DatasetScores("holdout", 500, {"rmse": rmse, "mae": mae, "r2": 0.1}, (), "fp"),),
            {"rmse": baseline_rmse}, SmokeTestResult("m", True, 5, "ok"), LatencyResult(500, 0.001, 3),
        )

    policy = PromotionSpec(min_primary=15.0, min_improvement_abs=0.1)
    better = promotion.decide(reg("2", rmse=12.0, mae=8.2), reg("1", rmse=12.5, mae=8.0), policy, RMSE)
    assert better.verdict == "promote"
    assert gate(better, "primary_improvement[holdout]").threshold == pytest.approx(12.4)
    assert gate(better, "min_primary[holdout]").passed
    worse = promotion.decide(reg("2", rmse=12.6, mae=7.0), reg("1", rmse=12.5, mae=8.0), policy, RMSE)
    assert failed(worse) == {"primary_improvement[holdout]"}
    too_high = promotion.decide(reg("1", rmse=16.0, mae=9.0), None, policy, RMSE)
    assert failed(too_high) == {"min_primary[holdout]"}
    mae_regressed = promotion.decide(reg("2", rmse=12.0, mae=8.6), reg("1", rmse=12.5, mae=8.0), policy, RMSE)
    assert failed(mae_regressed) == {"guardrail[holdout]"}
    loses_to_baseline = promotion.decide(reg("1", rmse=14.0, mae=9.0, baseline_rmse=13.0), None, policy, RMSE)
    assert failed(loses_to_baseline) == {"beats_baseline[holdout]"}


# --- segments, fresh batch, technical gates ---------------------------------------------------------


def test_no_segment_may_be_worse_than_the_tolerance():
    policy = PromotionSpec(segment_column="origin", segment_tolerance=0.03, segment_min_rows=200)
    champion = candidate("1", auc=0.70, segments=(SegmentScore("EWR", 400, 0.70), SegmentScore("JFK", 400, 0.70), SegmentScore("LGA", 150, 0.70)))
    challenger = candidate("2", auc=0.72, segments=(SegmentScore("EWR", 400, 0.75), SegmentScore("JFK", 400, 0.66), SegmentScore("LGA", 150, 0.50)))
    decision = promotion.decide(challenger, champion, policy, AUC)
    assert failed(decision) == {"segment origin=JFK[holdout]"}
    lga = gate(decision, "segment origin=LGA[holdout]")
    assert lga.skipped and lga.status == "skipped" and "150 rows" in lga.detail
    assert gate(decision, "segment origin=EWR[holdout]").passed


def test_a_segment_without_a_defined_metric_is_skipped_not_failed():
    policy = PromotionSpec(segment_column="origin", segment_min_rows=10)
    champion = candidate("1", segments=(SegmentScore("EWR", 50, None),))
    challenger = candidate("2", auc=0.75, segments=(SegmentScore("EWR", 50, None),))
    decision = promotion.decide(challenger, champion, policy, AUC)
    assert decision.verdict == "promote"
    assert gate(decision, "segment origin=EWR[holdout]").skipped


def test_a_fresh_batch_is_judged_as_well_as_the_holdout():
    champion = candidate("1", auc=0.70, batch={"roc_auc": 0.69, "log_loss": 0.5, "pr_auc": 0.4})
    challenger = candidate("2", auc=0.72, batch={"roc_auc": 0.67, "log_loss": 0.5, "pr_auc": 0.4})
    decision = promotion.decide(challenger, champion, LENIENT, AUC)
    assert failed(decision) == {"primary_improvement[batch]"}
    assert gate(decision, "primary_improvement[holdout]").passed


def test_a_failed_or_missing_smoke_test_rejects():
    assert failed(promotion.decide(candidate("2", auc=0.75, smoke=False), candidate("1"), LENIENT, AUC)) == {"smoke_test"}
    assert failed(promotion.decide(candidate("2", auc=0.75, smoke=None), candidate("1"), LENIENT, AUC)) == {"smoke_test"}


def test_the_latency_budget_applies_even_without_a_champion():
    decision = promotion.decide(candidate("1", ms_per_1k=900.0), None, PromotionSpec(latency_budget_ms_per_1k_rows=500), AUC)
    assert failed(decision) == {"latency"}
    assert gate(decision, "latency").challenger == pytest.approx(900.0)


# --- approvals, alias moves, audit ----------------------------------------------------------------


def test_a_decision_promotes_only_once_approved():
    decision = promotion.decide(candidate("2", auc=0.72), candidate("1"), LENIENT, AUC)
    assert decision.verdict == "promote" and not decision.promote
    assert decision.with_approval(Approval(True, "ana", "looks good", source="human")).promote
    rejected = decision.with_approval(Approval(False, "ana", "wait for Monday", source="human"))
    assert not rejected.promote
    assert "rejected by ana: wait for Monday" in rejected.reason


def test_a_recorded_human_answer_is_reused_only_by_a_retry_of_the_run_that_asked_within_the_timeout():
    champion = candidate("1")
    decision = promotion.decide(candidate("2", auc=0.72), champion, LENIENT, AUC)
    answer = Approval(True, "ana", "ok", "2024-01-01T00:00:00+00:00", source="human")
    tags = {audit.approval_tag_key(decision): audit.approval_tag_value(answer, "run-1")}
    soon = datetime(2024, 1, 1, 0, 0, 30, tzinfo=timezone.utc)

    reused, note = promotion.reusable_approval(decision, tags, "run-1", 120, now=soon)
    assert reused == Approval(True, "ana", "ok", "2024-01-01T00:00:00+00:00", source="recorded")
    assert note.startswith("Reused: the answer approved by ana at 2024-01-01T00:00:00+00:00")

    # A new run of the same comparison (someone started a new manual promotion): asked again.
    again, note = promotion.reusable_approval(decision, tags, "run-2", 120, now=soon)
    assert again is None and "given to another run" in note and "approved by ana" in note
    # The same run, retried after the approval timeout: asked again.
    late, note = promotion.reusable_approval(decision, tags, "run-1", 120, now=soon + timedelta(minutes=5))
    assert late is None and "older than the approval timeout (120 s)" in note
    # Whoever wants a new answer gets one.
    asked, note = promotion.reusable_approval(decision, tags, "run-1", 120, ask_again=True, now=soon)
    assert asked is None and "asked again" in note
    # Another comparison (other data, other champion) never sees this answer.
    other_data = promotion.decide(candidate("2", auc=0.72, holdout_fingerprint="run-9"), champion, LENIENT, AUC)
    other_champion = promotion.decide(candidate("2", auc=0.72), candidate("3"), LENIENT, AUC)
    assert promotion.reusable_approval(other_data, tags, "run-1", 120, now=soon) == (None, "")
    assert promotion.reusable_approval(other_champion, tags, "run-1", 120, now=soon) == (None, "")


def test_a_version_rolled_back_away_from_needs_a_persons_new_decision():
    change = audit.rollback_change("m", "rolled_back", "1", "2", None, "bad release", "rollback (by hand)")
    tags = audit.rolled_back_tags(change)

    mode, why = promotion.approval_requirement("auto", tags)

    assert mode == "manual" and "rolled back away from" in why and "bad release" in why and "to v1" in why
    assert promotion.approval_requirement("auto", {}) == ("auto", "")
    assert promotion.approval_requirement("auto", {}, ask_again=True)[0] == "manual"


def test_the_form_and_the_alerts_say_what_is_reused():
    decision = promotion.decide(candidate("2", auc=0.72), candidate("1"), LENIENT, AUC)
    earlier = "An earlier answer (approved by ana at 2024-01-01T00:00:00+00:00) is not reused: asked again."

    form = promotion_messages.approval_form_text(decision, 120, "Asked again: earlier answers are not reused.", earlier)
    assert earlier in form and "reused only if this same run is retried within 120 s" in form
    request = promotion_messages.approval_request_alert(decision, "http://ui/run", 120, "Asked again.", earlier)
    assert ("Earlier answer", earlier) in request.fields

    reused = decision.with_approval(Approval(True, "ana", "ok", "2024-01-01T00:00:00+00:00", source="recorded"))
    alert = promotion_messages.decision_alert(reused, audit.promotion_change(reused, "promoted", "1", None))
    assert dict(alert.fields)["Answer"].startswith("Reused: the answer approved by ana at 2024-01-01T00:00:00+00:00")


def test_policy_and_timeout_answers_are_not_recorded_as_human_answers():
    decision = promotion.decide(candidate("2", auc=0.72), candidate("1"), LENIENT, AUC)
    for approval in (promotion.policy_approval(decision), promotion.timeout_approval(60)):
        tags = audit.decision_tags(decision.with_approval(approval), audit.promotion_change(decision, "rejected", "1", None))
        assert audit.approval_tag_key(decision) not in tags
    assert promotion.timeout_approval(60).approved is False


def test_applying_a_decision_depends_on_the_champion_at_the_moment_of_the_swap():
    decision = promotion.decide(candidate("2", auc=0.72), candidate("1"), LENIENT, AUC)
    approved = decision.with_approval(promotion.policy_approval(decision))
    assert promotion.plan_alias_move(approved, "1") == "promoted"
    assert promotion.plan_alias_move(approved, "3") == "stale"
    assert promotion.plan_alias_move(approved, None) == "stale"
    assert promotion.plan_alias_move(approved, "2") == "noop"
    assert promotion.plan_alias_move(decision, "1") == "rejected"  # never approved
    first = promotion.decide(candidate("1"), None, LENIENT, AUC)
    assert promotion.plan_alias_move(first.with_approval(promotion.policy_approval(first)), None) == "promoted"


def test_a_promotion_moves_the_old_champion_to_previous_champion():
    decision = promotion.decide(candidate("2", auc=0.72), candidate("1"), LENIENT, AUC)
    approved = decision.with_approval(promotion.policy_approval(decision))
    change = audit.promotion_change(approved, "promoted", "1", "0", "http://ui/run")
    assert (change.champion_after, change.previous_champion_after, change.by) == ("2", "1", "policy:auto")
    rejected = audit.promotion_change(decision, "rejected", "1", "0")
    assert (rejected.champion_after, rejected.previous_champion_after) == ("1", "0")
    key, value = audit.audit_tag(change)
    assert key.startswith(audit.AUDIT_TAG_PREFIX)
    assert audit.change_from_tag(value) == change
    ledger = json.loads(audit.decision_tags(approved, change)[audit.LEDGER_TAG])
    assert {row["gate"] for row in ledger} >= {"smoke_test", "latency", "primary_improvement", "guardrail"}


def test_the_trail_explains_the_champion_when_its_last_move_put_it_there():
    first = AliasChange("m", "promoted", "1", None, "1", None, "", "auto", "t1")
    second = AliasChange("m", "promoted", "2", "1", "2", "1", "", "auto", "t2")
    rejected = AliasChange("m", "rejected", "3", "2", "2", "1", "", "gates", "t3")
    assert promotion.trail_explains([], None)
    assert promotion.trail_explains([first, second, rejected], "2")
    assert not promotion.trail_explains([first], "2")  # moved to v2 but never recorded
    assert not promotion.trail_explains([], "1")


def test_audit_keys_sort_in_time_order_and_never_collide():
    keys = [audit.audit_key() for _ in range(200)]
    assert len(set(keys)) == 200
    assert [k.split("-")[0] for k in keys] == sorted(k.split("-")[0] for k in keys)


def test_the_ledger_reads_as_markdown_and_as_text():
    decision = promotion.decide(candidate("2", auc=0.68), candidate("1"), LENIENT, AUC)
    markdown = decision.markdown()
    assert "**FAIL**" in markdown and "champion v1" in markdown and "Gates: FAIL: reject" in markdown
    text = promotion_messages.ledger_text(decision)
    assert "primary_improvement" in text and "FAIL" in text


def test_history_lists_who_was_champion_when_and_why():
    entries = [
        AliasChange("m", "promoted", "1", None, "1", None, "all 4 gates passed", "policy:auto", "2024-01-01T00:00:00+00:00"),
        AliasChange("m", "promoted", "2", "1", "2", "1", "all 9 gates passed; approved by ana", "ana", "2024-02-01T00:00:00+00:00"),
        AliasChange("m", "rolled_back", "1", "2", "1", None, "degraded on july", "rollback", "2024-03-01T00:00:00+00:00"),
    ]
    text = audit.format_history(entries).splitlines()
    assert len(text) == 4
    assert "v1 -> v2" in text[2] and "approved by ana" in text[2]
    assert "rolled_back" in text[3] and "degraded on july" in text[3]
    assert audit.format_history([]) == "no alias changes recorded"


def test_rollback_check_follows_the_metric_direction():
    cur = DatasetScores("batch", 900, {"rmse": 14.0}, ())
    prev = DatasetScores("batch", 900, {"rmse": 13.0}, ())
    check = promotion.rollback_check(cur, prev, "3", "2", RMSE, "s3://b/july.parquet")
    assert check.previous_is_better
    assert not promotion.rollback_check(prev, cur, "3", "2", RMSE, "s3://b/july.parquet").previous_is_better
    assert "v2 scores rmse 13.0000 vs v3 14.0000: better" in promotion.rollback_reason(check, "")


# --- scoring real predictions -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_model(flights_small, spec):
    from leanops import features, modeling
    from leanops.results import Batch

    feature_set = features.build_feature_set(Batch("mem://flights", "fp", flights_small), spec)
    trained = modeling.fit_models(feature_set, spec, {"n_estimators": 20, "max_depth": 3})
    return trained.model, feature_set


def test_scores_per_segment_use_the_training_metrics(small_model, spec, flights_small):
    model, feature_set = small_model
    holdout = feature_set.X_holdout.assign(**{spec.target.name: feature_set.y_holdout.to_numpy()})
    data = promotion.holdout_data(holdout, spec, "run-x")
    metrics = promotion.candidate_metrics("m", "1", model, [data], spec, baseline={"roc_auc": 0.5}, latency_repeats=2)
    scores = metrics.on("holdout")
    assert scores.n_rows == len(holdout)
    assert {s.segment for s in scores.segments} == set(holdout["origin"].unique())
    assert sum(s.n_rows for s in scores.segments) == len(holdout)
    from leanops import modeling

    expected = modeling.score(feature_set.y_holdout, modeling.predict_scores(model, feature_set.X_holdout, spec), spec)
    assert scores.metrics == expected
    assert metrics.latency.n_rows == len(holdout) and metrics.latency.ms_per_1k_rows > 0


def test_a_fresh_batch_drops_rows_without_a_target_like_training(spec):
    from leanops import datasets

    batch = datasets.flights_sample([7], rows_per_month=600, seed=3)
    data = promotion.batch_data(batch, spec, "fp")
    assert len(data.X) == int(batch["dep_delay"].notna().sum())
    # Every raw column but the label: a champion trained on an earlier spec finds the columns it takes.
    from leanops.features import model_input_columns

    assert set(model_input_columns(spec)) < set(data.X.columns) and spec.target.source not in data.X.columns


def test_a_missing_segment_column_is_a_clear_error(small_model, spec):
    from leanops.errors import SpecError

    model, feature_set = small_model
    data = promotion.EvalData("holdout", feature_set.X_holdout.drop(columns=["origin"]), feature_set.y_holdout, "fp")
    with pytest.raises(SpecError, match="segment_column 'origin'"):
        promotion.score_dataset(model, data, spec)


def test_smoke_check_of_predictions(spec):
    ok = promotion.check_predictions("models:/m/1", np.array([[0.9, 0.1], [0.2, 0.8]]), 2, spec)
    assert ok.passed
    assert not promotion.check_predictions("models:/m/1", np.array([[0.9, 0.1]]), 2, spec).passed
    assert not promotion.check_predictions("models:/m/1", np.array([[np.nan, 0.1], [0.2, 0.8]]), 2, spec).passed
    assert not promotion.check_predictions("models:/m/1", np.array([[1.5, -0.5], [0.2, 0.8]]), 2, spec).passed


# --- multiclass -----------------------------------------------------------------------------------

PITCHES = MetricSpec(
    primary="log_loss",
    guardrails=[GuardrailSpec(name="macro_f1", tolerance=0.03), GuardrailSpec(name="roc_auc_ovr", tolerance=0.01)],
)


def pitch_candidate(version: str, log_loss: float, macro_f1: float, roc_auc_ovr: float = 0.99) -> CandidateMetrics:
    metrics = {"log_loss": log_loss, "accuracy": 0.97, "macro_f1": macro_f1, "roc_auc_ovr": roc_auc_ovr}
    return CandidateMetrics(
        name="pitches", version=version, scores=(DatasetScores("holdout", 600, metrics, (), "run-1"),),
        baseline={"log_loss": 0.08, "macro_f1": 0.90}, smoke=SmokeTestResult(f"models:/pitches/{version}", True, 5, "ok"),
        latency=LatencyResult(n_rows=600, seconds=0.003, repeats=3),
    )


def test_multiclass_gates_judge_each_metric_in_its_own_direction():
    champion = pitch_candidate("1", log_loss=0.060, macro_f1=0.93)

    better = promotion.decide(pitch_candidate("2", log_loss=0.050, macro_f1=0.91), champion, LENIENT, PITCHES)
    lost_a_class = promotion.decide(pitch_candidate("3", log_loss=0.055, macro_f1=0.85), champion, LENIENT, PITCHES)
    worse = promotion.decide(pitch_candidate("4", log_loss=0.070, macro_f1=0.95), champion, LENIENT, PITCHES)

    assert better.verdict == "promote"  # log_loss lower is better; macro F1 2 points down is within 3
    assert failed(lost_a_class) == {"guardrail[holdout]"}
    assert gate(lost_a_class, "guardrail[holdout]").metric == "macro_f1"
    assert failed(worse) == {"primary_improvement[holdout]"}
    floor = promotion.decide(pitch_candidate("5", log_loss=0.40, macro_f1=0.9), None, PromotionSpec(min_primary=0.3), PITCHES)
    assert failed(floor) >= {"min_primary[holdout]"} and "must be at most 0.3" in gate(floor, "min_primary[holdout]").detail


def test_smoke_check_of_multiclass_predictions():
    from leanops.spec import load_spec

    spec = load_spec(promotion_specs() / "kershaw-pitch-type.yaml")
    four = np.array([[0.7, 0.1, 0.1, 0.1], [0.0, 0.0, 0.2, 0.8]])
    assert promotion.check_predictions("models:/p/1", four, 2, spec).passed
    three = promotion.check_predictions("models:/p/1", four[:, :3] / four[:, :3].sum(axis=1, keepdims=True), 2, spec)
    assert not three.passed and three.detail == "expected 4 class probabilities per row, got 3"
    assert promotion.check_predictions("models:/p/1", four * 0.5, 2, spec).detail == "class probabilities of a row do not sum to 1"
    assert not promotion.check_predictions("models:/p/1", np.array([0.7, 0.8]), 2, spec).passed


def promotion_specs():
    from pathlib import Path

    return Path(__file__).resolve().parent.parent / "specs"
