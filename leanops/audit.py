"""The audit trail of a model's champion: what a promotion, rejection or rollback leaves behind.

The entries (``AliasChange``) and their serialization: an entry is the tags of one MLflow run in the
model's audit experiment (``leanops/<model>/audit``, see ``leanops.aliases`` for when it is written);
version tags keep each version's current state (a decision's ledger, approver and reason, a human's
answer, a rolled-back version). Pure: ``leanops.aliases`` writes and reads it through the MLflow adapters; ``leanops.promotion``
decides; ``leanops.promotion_messages`` tells people.

Why runs and not registered-model tags (the legacy trail, one ``leanops.audit.<key>`` tag per entry):
a tag per move grows the model page without bound, while runs are paged, searchable and kept in
MLflow's database, which survives a restart of the local stack (no artifact: those live in S3, which
moto forgets). The entry's JSON is stored whole (split over tags below MLflow's tag limit) so reading it
back is exact; a few readable tags (action, version, champions, by) make the runs table legible.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict
from datetime import datetime, timezone

from leanops.results import AliasAction, AliasChange, Approval, PromotionDecision

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
# ... and the legacy history, one registered-model tag per entry (keys sort in time order), which
# ``leanops.aliases.migrate_legacy_trail`` moves into audit runs.
AUDIT_TAG_PREFIX = "leanops.audit."
# Tags of an audit run: the entry's JSON (in chunks: MLflow keeps at most 8,000 characters per run tag),
# its time-ordered key and readable fields.
ENTRY_TAG = "leanops.audit.entry"
ENTRY_KEY_TAG = "leanops.audit.key"
_CHUNK = 7000
_RUN_TAG_LIMIT = 8000


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


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


def describe_answer(answer: Approval) -> str:
    return f"{'approved' if answer.approved else 'rejected'} by {answer.by} at {answer.at}" + (f" ({answer.reason})" if answer.reason else "")


def rolled_back_note(tags: dict[str, str]) -> str:
    """"" unless a rollback moved the champion away from this version (what, when and why, if so)."""
    raw = tags.get(ROLLED_BACK_TAG)
    if not raw:
        return ""
    data = json.loads(raw)
    return f"rolled back away from at {data.get('at', '?')} (to v{data.get('to_version', '?')}: {data.get('reason', '')})"


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


def nothing_to_roll_back_to(model_name: str, champion: str, reason: str, by: str, flow_run_url: str = "") -> AliasChange:
    """A rollback asked for (e.g. by a degradation) when there is no previous champion: the champion stays,
    and the people who must act are told why. Not an audit entry: no alias moved."""
    why = (f"{reason + '; ' if reason else ''}there is no previous-champion to roll back to (v{champion} is the first "
           "champion, or an earlier rollback already used it): retrain, or roll back to a chosen version (to_version)")
    return AliasChange(model_name, "kept", str(champion), str(champion), str(champion), None, why, by, utc_now(), flow_run_url, "")


def audit_tag(change: AliasChange) -> tuple[str, str]:
    return f"{AUDIT_TAG_PREFIX}{change.key}", json.dumps(asdict(change), sort_keys=True)


def change_from_tag(value: str) -> AliasChange:
    return AliasChange(**json.loads(value))


def entry_tags(change: AliasChange, details: dict[str, str] | None = None) -> dict[str, str]:
    """The tags of the audit run holding ``change``, with the decision's ``details`` (e.g. its version tags)."""
    text = json.dumps(asdict(change), sort_keys=True)
    chunks = [text[start:start + _CHUNK] for start in range(0, len(text), _CHUNK)]
    tags = {f"{ENTRY_TAG}.{i}" if i else ENTRY_TAG: chunk for i, chunk in enumerate(chunks)}
    readable = {"action": change.action, "version": change.version, "champion_before": change.champion_before or "",
                "champion_after": change.champion_after or "", "by": change.by, "at": change.at}
    tags.update({f"{AUDIT_TAG_PREFIX}{field}": value for field, value in readable.items()})
    tags[ENTRY_KEY_TAG] = change.key
    tags["leanops.model"] = change.model_name
    tags.update({key: value[:_RUN_TAG_LIMIT] for key, value in (details or {}).items()})
    return tags


def change_from_entry(tags: dict[str, str]) -> AliasChange:
    """The entry an audit run holds (see :func:`entry_tags`)."""
    text, i = tags[ENTRY_TAG], 1
    while f"{ENTRY_TAG}.{i}" in tags:
        text, i = text + tags[f"{ENTRY_TAG}.{i}"], i + 1
    return AliasChange(**json.loads(text))


def entry_run_name(change: AliasChange) -> str:
    return f"{change.action} v{change.version}"


def epoch_ms(at: str) -> int:
    """An entry's ISO 8601 time as MLflow's start time (a migrated entry keeps its moment)."""
    return int(datetime.fromisoformat(at).timestamp() * 1000)


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
