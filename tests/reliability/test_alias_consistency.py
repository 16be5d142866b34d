"""Scenario 8 (the parts not covered elsewhere): a rollback with no previous champion ever, and rollbacks
that name a version or model that does not exist. Each fails with a message that says what is missing and
moves no alias. An approval nobody answers in time: the run ends Completed with a recorded rejection
(Slack says so), the aliases stay, and a later promotion of the same version asks a person again.

Covered in tests/e2e/test_promote.py, not repeated here: a second rollback after the previous champion was
spent (test_rollback_restores_the_previous_champion_and_records_why), a promote after a rollback
(test_a_version_rolled_back_away_from_returns_only_by_a_persons_new_answer), a degradation with nothing to
roll back to (test_a_degradation_after_the_last_rollback_is_reported_and_failed_runs_alert), two
promotions racing (test_racing_promotions_end_with_one_champion_a_correct_previous_champion_and_both_decisions)."""

from __future__ import annotations

import time

import pytest
from prefect.client.orchestration import get_client

from leanops import registry
from leanops.errors import ModelNotFound
from support import answer_when_paused, environment, promote_in_thread, spec_copy, wait_for

pytestmark = pytest.mark.e2e


def aliases(name: str) -> dict[str, str | None]:
    return {alias: registry.alias_version(name, alias) for alias in (registry.CHAMPION, registry.PREVIOUS_CHAMPION, registry.CHALLENGER)}


def rollback(**parameters):
    from flows.rollback import rollback as flow

    return flow(**parameters, return_state=True)


ROLLBACKS = [
    ("a rollback of a first champion", {}, "has no 'previous-champion' to roll back to; pass to_version"),
    ("a rollback to a version that does not exist", {"to_version": "99"}, "99"),
]


@pytest.mark.parametrize(("case", "parameters", "says"), ROLLBACKS, ids=[c[0] for c in ROLLBACKS])
def test_a_rollback_with_nothing_to_roll_back_to_says_so_and_moves_no_alias(small_champion, record, case, parameters, says):
    row = record("8 rollback, nothing to roll back to", case)
    name = small_champion["name"]
    before = aliases(name)
    assert before[registry.CHAMPION] == small_champion["version"] and before[registry.PREVIOUS_CHAMPION] is None

    state = rollback(spec=str(small_champion["spec_path"]), reason="reliability scenario 8", **parameters)

    assert state.is_failed()
    with pytest.raises(ModelNotFound) as raised:
        state.result()
    assert says in str(raised.value) and name in str(raised.value)
    assert aliases(name) == before
    row.survived, row.data_lost = True, "none (aliases unchanged)"


def test_a_rollback_of_a_model_never_registered_says_so(stack, tmp_path, record):
    row = record("8 rollback, nothing to roll back to", "a rollback of an unregistered model")
    name = "reliability-never-registered"
    state = rollback(spec=str(spec_copy(tmp_path, name)), reason="reliability scenario 8")

    assert state.is_failed()
    with pytest.raises(ModelNotFound, match=f"no registered model '{name}'"):
        state.result()
    assert not registry.model_exists(name)
    row.survived, row.data_lost = True, "none (nothing created)"


def test_an_approval_nobody_answers_is_a_recorded_rejection_and_a_later_promote_asks_again(small_champion, stack, slack, tmp_path, record):
    from flows.promote import promote
    from leanops.aliases import alias_history

    row = record("8 approval times out", "nobody answers the Resume form within the spec's 3 s")
    name = f"reliability-approval-{small_champion['version']}-{tmp_path.name[-6:]}"
    (version,) = [str(registry.client().copy_model_version(f"models:/{small_champion['name']}/{small_champion['version']}", name).version)]
    # No champion yet, and gates a small model passes: the decision is "promote", so a person is asked.
    gates = {
        "promotion__approval": "manual", "promotion__must_beat_baseline": False, "promotion__min_primary": 0.5,
        "promotion__latency_budget_ms_per_1k_rows": 1e6,  # the latency gate measures this machine's load, not the model
    }
    hasty = spec_copy(tmp_path, name, promotion__approval_timeout_seconds=3, **gates)
    before = aliases(name)

    with environment(LEANOPS_SLACK_TOKEN="xoxb-reliability", LEANOPS_SLACK_BASE_URL=slack.base_url):
        state = promote(spec=str(hasty), version=version, return_state=True)

    # The run ends as the decision it records (Completed, not Failed by the expired pause), and says so.
    assert state.is_completed(), state.message
    change = state.result()
    assert (change.action, change.by) == ("rejected", "timeout") and "no answer within 3 s" in change.reason
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(state.state_details.flow_run_id).state.type.value == "COMPLETED"
    assert aliases(name) == before
    assert [(c.action, c.by) for c in alias_history(name)] == [("rejected", "timeout")]
    titles = [post["blocks"][0]["text"]["text"] for post in slack.delivered()]
    assert any(f"v{version} passed its gates and awaits approval" in t for t in titles), titles
    assert any(f"v{version} rejected; champion stays vnone" in t for t in titles), titles
    assert "no answer within 3 s" in str(slack.delivered()[-1]["blocks"])

    # A later promotion of the same version asks a person again (the timeout is no answer), and an answer counts.
    recovered_from = time.monotonic()
    (tmp_path / "patient").mkdir()
    patient = spec_copy(tmp_path / "patient", name, promotion__approval_timeout_seconds=120, **gates)
    thread, out, tag = promote_in_thread(spec=str(patient), version=version)
    answer_when_paused(tag, approve=True, approver="ana", reason="checked by hand after the timeout")
    thread.join(120)
    approved = out["state"].result()
    assert (approved.action, approved.by) == ("promoted", "ana")
    assert aliases(name)[registry.CHAMPION] == version
    assert [(c.action, c.by) for c in alias_history(name)] == [("rejected", "timeout"), ("promoted", "ana")]
    row.survived, row.recover_seconds = True, time.monotonic() - recovered_from
    row.data_lost = "none (rejection recorded, aliases unchanged, asked again)"
