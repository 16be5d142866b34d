"""promote: judge a challenger against the champion on the same data, ask a person if the spec says
so, then move the aliases (with an audit trail) or record the rejection."""

from __future__ import annotations

import math

from prefect import flow, pause_flow_run, runtime
from prefect.exceptions import FlowPauseTimeout
from prefect.input import RunInput

from leanops import promotion, promotion_messages
from leanops.errors import AliasConflict
from leanops.results import AliasChange, Approval, PromotionDecision
from leanops.spec import Spec
from flows.live_gate import wait_for_live_evidence
from tasks.alert import alert_on_failure, send_alert
from tasks.evaluate import find_champion
from tasks.ingest import load_batch
from tasks.promote import (
    already_champion, apply_decision, approval_of, decide_promotion, evaluate_candidates, remember_approval,
    resolve_challenger, smoke_test_version,
)
from tasks.publish import publish_event
from tasks.spec import load_model_spec
from tasks.validate import validate_batch

# A decision goes stale when another promotion moves the champion first; decide again, a few times at most.
MAX_ROUNDS = 3


class ApprovalInput(RunInput):
    """The form behind the Prefect UI's Resume button."""

    approve: bool = False
    reason: str = ""
    approver: str = ""


@flow(name="promote", log_prints=True, on_failure=[alert_on_failure])
def promote(
    spec: str, version: int | str | None = None, batch_uri: str | None = None, approval: str | None = None, ask_again: bool = False,
) -> AliasChange:
    """Promote ``version`` (default: the ``challenger`` alias) of the model described by ``spec`` if it passes its gates.

    ``ask_again``: ask a person even if one answered this comparison before (implies manual approval).
    A version a rollback moved away from always waits for a person's new answer."""
    model_spec = load_model_spec(spec)
    mode = promotion.approval_mode(model_spec.promotion, approval)
    challenger = resolve_challenger(model_spec, version)
    mode, why_asked = promotion.approval_requirement(mode, challenger.tags, ask_again)
    batch = load_batch(batch_uri, model_spec) if batch_uri else None
    if batch is not None:
        validate_batch(batch, model_spec)
    smoke = smoke_test_version(model_spec, challenger)
    for _ in range(MAX_ROUNDS):
        champion = find_champion(model_spec)
        if champion is not None and champion.version == challenger.version:
            return already_champion(challenger)
        decision = decide_promotion(model_spec, *evaluate_candidates(model_spec, challenger, champion, batch), smoke)
        if decision.verdict == "promote" and model_spec.serving.live_gate:
            decision = wait_for_live_evidence(decision, model_spec)
        if decision.verdict == "promote":
            answer, earlier = approval_of(model_spec, decision, mode, ask_again)
            decision = decision.with_approval(answer or wait_for_approval(decision, model_spec, why_asked, earlier))
        change = apply_decision(model_spec, decision)
        if change.action != "stale":
            break
    else:
        raise AliasConflict(f"the champion of {model_spec.name} changed during each of {MAX_ROUNDS} decisions; nothing was moved")
    event = promotion_messages.outcome_event(decision, change)
    if event is not None:
        publish_event(event)
    alert = promotion_messages.decision_alert(decision, change)
    if alert is not None:
        send_alert(alert)
    return change


def wait_for_approval(decision: PromotionDecision, model_spec: Spec, why_asked: str = "", earlier: str = "") -> Approval:
    """Pause this run until someone answers the form (Slack links to it); no answer in time is a rejection.
    Must run in the flow itself: a task cannot pause its flow run."""
    timeout = model_spec.promotion.approval_timeout_seconds
    send_alert(promotion_messages.approval_request_alert(decision, runtime.flow_run.ui_url or "", timeout, why_asked, earlier))
    form = ApprovalInput.with_initial_data(
        description=promotion_messages.approval_form_text(decision, timeout, why_asked, earlier), approve=False
    )
    try:
        # Each poll is an API call: every second for short waits (resumes within ~1 s), every 5 s for long ones.
        answer = pause_flow_run(wait_for_input=form, timeout=math.ceil(timeout), poll_interval=1 if timeout <= 300 else 5)
    except FlowPauseTimeout:
        _go_on_after_expired_pause("no approval within the timeout: recorded as a rejection")
        return promotion.timeout_approval(timeout)
    return remember_approval(decision, promotion.human_approval(answer.approve, answer.approver, answer.reason))


def _go_on_after_expired_pause(message: str) -> None:
    """The run is still Paused on the server, which can no longer resume it: it would end Failed, as if
    the promotion had broken. No answer is an answer here (a rejection), so the run takes itself back
    to Running and ends as the decision it records."""
    from prefect.client.orchestration import get_client
    from prefect.states import Running

    with get_client(sync_client=True) as client:
        client.set_flow_run_state(runtime.flow_run.id, Running(message=message), force=True)


if __name__ == "__main__":
    from flows._cli import run_from_command_line

    run_from_command_line(promote)
