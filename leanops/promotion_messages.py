"""What promotions and rollbacks tell people: lifecycle events, Slack alerts, the approval form's text
and the ledger as chat text. Built from decisions and audit entries; nothing is decided here."""

from __future__ import annotations

from leanops import events
from leanops.audit import describe_answer
from leanops.notify import Alert
from leanops.promotion import HOLDOUT, format_value
from leanops.results import AliasChange, PromotionDecision


def ledger_text(decision: PromotionDecision, max_rows: int = 30) -> str:
    """The ledger as fixed-width text (chat messages have no tables)."""
    rows = [("gate", "data", "metric", "challenger", "champion", "threshold", "result")]
    for g in decision.gates[:max_rows]:
        rows.append((g.gate, g.dataset, g.metric, format_value(g.challenger), format_value(g.champion), format_value(g.threshold), g.status))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    if len(decision.gates) > max_rows:
        lines.append(f"... {len(decision.gates) - max_rows} more gates")
    return "\n".join(lines)


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
    reused = ((("Answer", f"Reused: the answer {describe_answer(approval)}, given to this run before it was retried"),)
              if approval is not None and approval.source == "recorded" else ())
    return Alert(decision.model_name, kind, title,
                 (("Decided by", change.by), *reused, ("Why", change.reason), _ledger_field(decision)), links)


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
