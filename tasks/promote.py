"""Stages of promotion and rollback: resolve versions, evaluate both on the same data, smoke test,
decide (with ledger artifacts), apply alias moves under a per-model lock, read the history.

Alias moves run inside a Prefect global concurrency limit of one slot per model, so two promotions
(or a promotion and a rollback) of one model never interleave their read-decide-write steps.
"""

from __future__ import annotations

from prefect import get_run_logger, runtime, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from leanops import aliases, audit, promotion, registry, smoke
from leanops.registry import ModelVersionInfo
from leanops.results import (
    AliasChange,
    Approval,
    Batch,
    CandidateMetrics,
    PromotionDecision,
    RollbackCheck,
    SmokeTestResult,
)
from leanops.spec import Spec
from tasks._locks import model_lock
from tasks._policies import CACHED, RETRY_IO


def _run_url() -> str:
    return runtime.flow_run.ui_url or ""


# --- promotion ------------------------------------------------------------------------------------


@task(cache_policy=NO_CACHE, **RETRY_IO)
def resolve_challenger(spec: Spec, version: str | None) -> ModelVersionInfo:
    return registry.resolve_version(spec.registered_model_name, version or registry.CHALLENGER)


# Cached on (spec, challenger version, champion version, batch fingerprint): a rerun of the same
# comparison reuses the scores instead of loading and predicting again.
@task(**CACHED, **RETRY_IO)
def evaluate_candidates(
    spec: Spec, challenger: ModelVersionInfo, champion: ModelVersionInfo | None, batch: Batch | None
) -> tuple[CandidateMetrics, CandidateMetrics | None]:
    """Challenger and champion on the same data: the challenger's holdout and, if given, a fresh labelled batch."""
    data = [promotion.holdout_data(registry.load_holdout(challenger), spec, f"run:{challenger.run_id}")]
    if batch is not None:
        data.append(promotion.batch_data(batch.frame, spec, batch.fingerprint))
    baseline = promotion.recorded_baseline(challenger.metrics)
    ours = promotion.candidate_metrics(challenger.name, challenger.version, registry.load_model(challenger), data, spec, baseline)
    theirs = None
    if champion is not None:
        theirs = promotion.candidate_metrics(champion.name, champion.version, registry.load_model(champion), data, spec)
    get_run_logger().info(
        "evaluated v%s%s on %s", challenger.version, f" and champion v{champion.version}" if champion else "",
        ", ".join(f"{d.name} ({len(d.X)} rows)" for d in data),
    )
    return ours, theirs


@task(cache_policy=NO_CACHE, **RETRY_IO)
def smoke_test_version(spec: Spec, version: ModelVersionInfo) -> SmokeTestResult:
    result = smoke.smoke_test(version, spec)
    get_run_logger().info("smoke test of %s: %s (%s)", result.model_uri, "passed" if result.passed else "FAILED", result.detail)
    return result


@task(cache_policy=NO_CACHE)
def decide_promotion(
    spec: Spec, challenger: CandidateMetrics, champion: CandidateMetrics | None, smoke: SmokeTestResult
) -> PromotionDecision:
    from dataclasses import replace

    decision = promotion.decide(replace(challenger, smoke=smoke), champion, spec.promotion, spec.metric)
    create_table_artifact(
        key=f"{spec.name}-promotion-ledger",
        table=decision.table(),
        description=f"Gates for v{decision.challenger_version} vs "
        + (f"champion v{decision.champion_version}" if decision.champion_version else "no champion"),
    )
    create_markdown_artifact(key=f"{spec.name}-promotion-decision", markdown=decision.markdown(), description=decision.reason[:500])
    get_run_logger().info("gates say %s: %s", decision.verdict, decision.reason)
    return decision


def _run_id() -> str:
    return str(runtime.flow_run.id or "")


@task(cache_policy=NO_CACHE, **RETRY_IO)
def approval_of(spec: Spec, decision: PromotionDecision, mode: str, ask_again: bool = False) -> tuple[Approval | None, str]:
    """The policy's answer (auto); in manual mode, a human's answer this run recorded before it was
    retried (within the approval timeout), or None: ask. With a sentence on what is (not) reused."""
    if mode == "auto":
        return promotion.policy_approval(decision), ""
    tags = registry.get_version(decision.model_name, decision.challenger_version).tags
    answer, note = promotion.reusable_approval(decision, tags, _run_id(), spec.promotion.approval_timeout_seconds, ask_again)
    if note:
        get_run_logger().info(note)
    return answer, note


@task(cache_policy=NO_CACHE, **RETRY_IO)
def remember_approval(decision: PromotionDecision, approval: Approval) -> Approval:
    """Record a human's answer on the challenger at once, so a retry of this run does not ask again."""
    if approval.source == "human":
        registry.set_version_tags(
            decision.model_name, decision.challenger_version,
            {audit.approval_tag_key(decision): audit.approval_tag_value(approval, _run_id())},
        )
    return approval


@task(cache_policy=NO_CACHE, **RETRY_IO)
def apply_decision(spec: Spec, decision: PromotionDecision) -> AliasChange:
    """Under the model's lock: re-read the champion, move aliases if the decision still holds, record it."""
    with model_lock(spec.registered_model_name, "aliases"):
        change = aliases.apply_promotion(decision, _run_url())
    logger = get_run_logger()
    logger.info("%s v%s: %s", change.action, change.version, change.reason)
    if change.action in ("promoted", "rejected"):
        create_markdown_artifact(
            key=f"{spec.name}-promotion-outcome",
            markdown=f"**{change.action.upper()}** v{change.version}: champion v{change.champion_before or '-'} -> "
            f"v{change.champion_after or '-'}, previous-champion v{change.previous_champion_after or '-'}\n\n"
            f"By {change.by} at {change.at}. {change.reason}",
            description=f"{change.action} v{change.version}",
        )
    return change


@task(cache_policy=NO_CACHE)
def already_champion(challenger: ModelVersionInfo) -> AliasChange:
    get_run_logger().info("v%s already is the champion of %s: nothing to do", challenger.version, challenger.name)
    return audit.already_champion(challenger.name, challenger.version, _run_url())


# --- rollback -------------------------------------------------------------------------------------


@task(cache_policy=NO_CACHE, **RETRY_IO)
def find_rollback_candidates(spec: Spec, to_version: str | None, missing_ok: bool = False) -> tuple[ModelVersionInfo, ModelVersionInfo | None]:
    """(champion, target); with ``missing_ok``, target None when there is no previous champion."""
    return aliases.rollback_candidates(spec.registered_model_name, to_version, missing_ok=missing_ok)


@task(cache_policy=NO_CACHE)
def keep_champion(spec: Spec, current: ModelVersionInfo, reason: str) -> AliasChange:
    """Nothing to roll back to: the champion stays, and the outcome says what to do instead."""
    change = audit.nothing_to_roll_back_to(
        spec.registered_model_name, current.version, reason, f"rollback ({runtime.flow_run.name or 'by hand'})", _run_url()
    )
    get_run_logger().warning(change.reason)
    create_markdown_artifact(key=f"{spec.name}-rollback", markdown=f"**NOTHING TO ROLL BACK TO**\n\n{change.reason}",
                             description=f"champion v{current.version} kept")
    return change


@task(**CACHED, **RETRY_IO)
def compare_on_batch(spec: Spec, current: ModelVersionInfo, previous: ModelVersionInfo, batch: Batch) -> RollbackCheck:
    """Current and previous champion scored on the batch that showed the degradation."""
    data = promotion.batch_data(batch.frame, spec, batch.fingerprint)
    cur = promotion.score_dataset(registry.load_model(current), data, spec)
    prev = promotion.score_dataset(registry.load_model(previous), data, spec)
    check = promotion.rollback_check(cur, prev, current.version, previous.version, spec.metric, batch.uri)
    get_run_logger().info(promotion.rollback_reason(check, ""))
    return check


@task(cache_policy=NO_CACHE, **RETRY_IO)
def apply_rollback(spec: Spec, current: ModelVersionInfo, target: ModelVersionInfo, check: RollbackCheck | None, reason: str) -> AliasChange:
    by = f"rollback ({runtime.flow_run.name or 'by hand'})"
    with model_lock(spec.registered_model_name, "aliases"):
        change = aliases.apply_rollback(spec.registered_model_name, current.version, target.version, check, reason, by, _run_url())
    get_run_logger().info("%s: champion v%s -> v%s (%s)", change.action, change.champion_before, change.champion_after, change.reason)
    create_markdown_artifact(
        key=f"{spec.name}-rollback",
        markdown=f"**{change.action.upper()}**: champion v{change.champion_before} -> v{change.champion_after}\n\n{change.reason}",
        description=f"{change.action} to v{change.version}",
    )
    return change


# --- history --------------------------------------------------------------------------------------


@task(cache_policy=NO_CACHE, **RETRY_IO)
def read_alias_history(spec: Spec) -> list[AliasChange]:
    changes = aliases.alias_history(spec.registered_model_name)
    create_table_artifact(
        key=f"{spec.name}-alias-history",
        table=[
            {"when": c.at, "action": c.action, "version": c.version, "champion_before": c.champion_before,
             "champion_after": c.champion_after, "previous_champion": c.previous_champion_after, "by": c.by, "why": c.reason}
            for c in changes
        ],
        description=f"Alias history of {spec.registered_model_name}: {len(changes)} entries",
    )
    return changes
