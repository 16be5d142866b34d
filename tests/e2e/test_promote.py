"""Promotion, approval, rollback and history end to end: real MLflow server, real Prefect server.

Three source models are trained once by the real retrain flow (a weak one-stump model and two strong
ones on different data); each test copies the versions it needs into its own registered model
(MLflow's copy_model_version: same run, same artifacts), so tests never share aliases or history.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import pytest

from leanops import datasets, events, registry, storage
from leanops.aliases import alias_history, apply_promotion
from leanops.errors import ContractViolation, ModelNotFound, SpecError
from support import answer_when_paused, paused_run_id, promote_in_thread, spec_copy, wait_for_events

pytestmark = pytest.mark.e2e

SOURCE = "promote-src"
WEAK = {"n_estimators": 1, "max_depth": 1}
# Relaxed gates let the weak model become a first champion, so stronger ones have something to beat.
RELAXED = {"promotion__must_beat_baseline": False}


def spec_file(folder: Path, name: str, variant: str = "default", **overrides) -> str:
    """A spec for model ``name``; several variants (gates, approval) may describe the same model."""
    path = spec_copy(folder, name, **overrides)
    return str(path.rename(folder / f"{name}-{variant}.yaml"))


@pytest.fixture(scope="module")
def sources(mlflow_server, prefect_server, tmp_path_factory):
    """Versions of SOURCE by label, trained by the retrain flow on real flights of January-June."""
    from flows.retrain import retrain

    folder = tmp_path_factory.mktemp("promote-sources")
    made = {}
    for label, seed, rows, params in (("weak", 3, 700, WEAK), ("strong", 3, 1500, None), ("strong_b", 4, 1500, None)):
        uri = str(folder / f"{label}.parquet")
        storage.write_table(datasets.flights_sample(range(1, 7), rows_per_month=rows, seed=seed), uri)
        spec = spec_file(folder, SOURCE, label, **({"model__params": params} if params else {}))
        made[label] = retrain(spec=spec, batch_uri=uri).version
    return made


@pytest.fixture(scope="module")
def july(tmp_path_factory):
    """A fresh labelled batch (July), later than every training month."""
    uri = str(tmp_path_factory.mktemp("july") / "july.parquet")
    storage.write_table(datasets.flights_sample([7], rows_per_month=2000, seed=7), uri)
    return uri


def new_model(sources: dict[str, str], *labels: str) -> tuple[str, list[str]]:
    """A fresh registered model holding copies of the labelled source versions, as versions 1, 2 ..."""
    name = f"promote-{uuid.uuid4().hex[:8]}"
    mlflow = registry.client()
    versions = [str(mlflow.copy_model_version(f"models:/{SOURCE}/{sources[label]}", name).version) for label in labels]
    return name, versions


def aliases(name: str) -> tuple[str | None, str | None]:
    champion = registry.get_alias(name, registry.CHAMPION)
    previous = registry.get_alias(name, registry.PREVIOUS_CHAMPION)
    return (champion.version if champion else None, previous.version if previous else None)


def ledger(name: str, version: str) -> list[dict]:
    import json

    return json.loads(registry.get_version(name, version).tags["leanops.promotion.ledger"])


# --- gates ----------------------------------------------------------------------------------------


def test_the_first_model_becomes_champion_through_the_absolute_gates(sources, tmp_path, prefect_server):
    from flows.promote import promote

    name, (v1,) = new_model(sources, "strong")
    registry.set_alias(name, registry.CHALLENGER, v1)
    change = promote(spec=spec_file(tmp_path, name))  # default: the challenger alias

    assert (change.action, change.version, change.champion_before) == ("promoted", v1, None)
    assert aliases(name) == (v1, None)
    assert {row["gate"] for row in ledger(name, v1)} == {"smoke_test", "latency", "min_primary", "beats_baseline"}
    assert all(row["result"] == "pass" for row in ledger(name, v1))
    tags = registry.get_version(name, v1).tags
    assert tags["leanops.promotion.decision"] == "promoted"
    assert tags["leanops.promotion.approved_by"] == "policy:auto"
    assert tags["leanops.promotion.flow_run_url"].startswith("http://127.0.0.1")
    found = wait_for_events(prefect_server, events.MODEL_PROMOTED, events.model_resource_id(name))
    assert found[0]["payload"]["version"] == v1 and found[0]["payload"]["previous_version"] == ""


def test_a_better_challenger_is_promoted_and_a_worse_one_rejected_with_its_gate_named(sources, tmp_path, prefect_server):
    from flows.promote import promote

    name, (weak, strong, worse) = new_model(sources, "weak", "strong", "weak")
    assert promote(spec=spec_file(tmp_path, name, "relaxed", **RELAXED), version=weak).action == "promoted"
    spec = spec_file(tmp_path, name)

    better = promote(spec=spec, version=strong)
    assert better.action == "promoted"
    assert aliases(name) == (strong, weak)
    gates = ledger(name, strong)
    assert {row["gate"] for row in gates} >= {"primary_improvement", "guardrail", "beats_baseline", "segment origin=EWR"}
    assert all(row["result"] in ("pass", "skipped") for row in gates)

    rejected = promote(spec=spec, version=worse)
    assert rejected.action == "rejected"
    assert "primary_improvement[holdout]" in rejected.reason and "beats_baseline[holdout]" in rejected.reason
    assert aliases(name) == (strong, weak)
    assert registry.get_version(name, worse).tags["leanops.promotion.decision"] == "rejected"
    found = wait_for_events(prefect_server, events.MODEL_REJECTED, events.model_resource_id(name))
    assert "primary_improvement[holdout]" in found[0]["payload"]["failed_gates"].split(",")

    history_before = alias_history(name)
    again = promote(spec=spec, version=strong)
    assert again.action == "noop"
    assert aliases(name) == (strong, weak)
    assert alias_history(name) == history_before
    assert [c.action for c in history_before] == ["promoted", "promoted", "rejected"]


# --- manual approval ------------------------------------------------------------------------------


def _form_text(tag: str) -> str:
    """The description above the paused run's Resume form (saved just after the pause)."""
    from prefect.client.orchestration import get_client
    from prefect.input.run_input import keyset_from_paused_state

    from support import wait_for

    run_id = paused_run_id(tag)

    def description():
        with get_client(sync_client=True) as client:
            try:
                return client.read_flow_run_input(run_id, keyset_from_paused_state(client.read_flow_run(run_id).state)["description"])
            except Exception:  # noqa: BLE001 - not saved yet (404): poll again
                return None

    return wait_for(description, f"the form description of paused run {run_id}", 20, 0.3)


def _promote_answered(params: dict, **answer):
    """Run promote in a thread, read its Resume form, answer it: (outcome, form text, final state)."""
    thread, out, tag = promote_in_thread(**params)
    form = _form_text(tag)
    answer_when_paused(tag, **answer)
    thread.join(60)
    return out["state"].result(), form, out["state"]


def api_state(flow_run_id) -> str:
    """The run's state type as the server has it (what the UI shows)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id).state.type.value


def _was_paused(flow_run_id) -> bool:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return any(state.is_paused() for state in client.read_flow_run_states(flow_run_id))


def test_manual_approval_resumes_both_ways_times_out_to_a_rejection_and_a_new_run_asks_again(sources, tmp_path, july):
    from flows.promote import promote

    name, (v1,) = new_model(sources, "strong")
    manual = spec_file(tmp_path, name, "manual", promotion__approval="manual", promotion__approval_timeout_seconds=120)
    hasty = spec_file(tmp_path, name, "hasty", promotion__approval="manual", promotion__approval_timeout_seconds=3)

    # Rejected by a person: recorded with who and why; nothing moves.
    thread, out, tag = promote_in_thread(spec=manual, version=v1)
    answer_when_paused(tag, approve=False, reason="not before the holidays", approver="ana")
    thread.join(60)
    rejected = out["state"].result()
    assert (rejected.action, rejected.by) == ("rejected", "ana")
    assert "not before the holidays" in rejected.reason
    assert aliases(name) == (None, None)

    # The same comparison in a new run (someone starts a new manual promotion): asked again, and the
    # form says which earlier answer it does not reuse.
    again, form, state = _promote_answered(dict(spec=manual, version=v1), approve=False, reason="still not", approver="ana")
    assert "An earlier answer (rejected by ana" in form and "given to another run" in form
    assert (again.action, again.by) == ("rejected", "ana")
    assert _was_paused(state.state_details.flow_run_id)

    # Another comparison (with a fresh batch) nobody answers in time: a rejection, recorded as such.
    state = promote(spec=hasty, version=v1, batch_uri=july, return_state=True)
    assert state.is_completed()
    assert api_state(state.state_details.flow_run_id) == "COMPLETED"  # not Failed, as an expired pause would leave it
    last = alias_history(name)[-1]
    assert (last.action, last.by) == ("rejected", "timeout")
    assert aliases(name) == (None, None)

    # A timeout is no answer: the same comparison asks again, and an approval promotes.
    thread, out, tag = promote_in_thread(spec=manual, version=v1, batch_uri=july)
    answer_when_paused(tag, approve=True, reason="checked July", approver="bo")
    thread.join(60)
    approved = out["state"].result()
    assert (approved.action, approved.by) == ("promoted", "bo")
    assert aliases(name) == (v1, None)
    assert registry.get_version(name, v1).tags["leanops.promotion.approved_by"] == "bo"
    assert [(c.action, c.by) for c in alias_history(name)] == [
        ("rejected", "ana"), ("rejected", "ana"), ("rejected", "timeout"), ("promoted", "bo")
    ]


# --- rollback and history -------------------------------------------------------------------------


def test_rollback_restores_the_previous_champion_and_records_why(sources, tmp_path, july, prefect_server):
    from flows.history import history
    from flows.promote import promote
    from flows.rollback import rollback

    name, (weak, strong) = new_model(sources, "weak", "strong")
    promote(spec=spec_file(tmp_path, name, "relaxed", **RELAXED), version=weak)
    spec = spec_file(tmp_path, name)
    promote(spec=spec, version=strong)
    assert aliases(name) == (strong, weak)

    # The degrading batch does not favour the previous champion: kept, and recorded.
    kept = rollback(spec=spec, batch_uri=july, reason="degraded on July")
    assert kept.action == "kept"
    assert aliases(name) == (strong, weak)
    assert "not better" in kept.reason

    back = rollback(spec=spec, reason="bad release")
    assert (back.action, back.version, back.champion_before) == ("rolled_back", weak, strong)
    assert aliases(name) == (weak, None)
    assert registry.get_version(name, weak).tags["leanops.rollback.reason"] == "bad release"
    found = wait_for_events(prefect_server, events.MODEL_ROLLED_BACK, events.model_resource_id(name))
    assert (found[0]["payload"]["version"], found[0]["payload"]["from_version"]) == (weak, strong)

    with pytest.raises(ModelNotFound, match="no 'previous-champion' to roll back to"):
        rollback(spec=spec)

    # To a given version, if it scores better on the batch: it does.
    forward = rollback(spec=spec, to_version=strong, batch_uri=july, reason="weak model on July")
    assert forward.action == "rolled_back" and aliases(name) == (strong, None)
    assert "better" in forward.reason

    entries = history(spec=spec)
    assert [(c.action, c.version) for c in entries] == [
        ("promoted", weak), ("promoted", strong), ("kept", weak), ("rolled_back", weak), ("rolled_back", strong)
    ]
    assert entries[3].reason == "bad release"


def test_a_version_rolled_back_away_from_returns_only_by_a_persons_new_answer(sources, tmp_path):
    from flows.promote import promote
    from flows.rollback import rollback

    name, (weak, strong) = new_model(sources, "weak", "strong")
    promote(spec=spec_file(tmp_path, name, "relaxed", **RELAXED), version=weak)
    spec = spec_file(tmp_path, name, "auto", promotion__approval_timeout_seconds=120)  # automatic approval
    registry.set_alias(name, registry.CHALLENGER, strong)
    assert promote(spec=spec).action == "promoted"
    assert rollback(spec=spec, reason="bad release").action == "rolled_back"

    # The challenger alias left the bad version: a plain promote has nothing to judge.
    assert registry.get_alias(name, registry.CHALLENGER) is None
    with pytest.raises(ModelNotFound, match="has no alias 'challenger'"):
        promote(spec=spec)
    assert aliases(name) == (weak, None)

    # Named explicitly, under automatic approval, it still waits for a person, and the form says why.
    back, form, _ = _promote_answered(dict(spec=spec, version=strong), approve=True, reason="fixed upstream data", approver="bo")
    assert "rolled back away from" in form and "bad release" in form
    assert (back.action, back.by) == ("promoted", "bo")
    assert aliases(name) == (strong, weak)


# --- races ----------------------------------------------------------------------------------------


def test_racing_promotions_end_with_one_champion_a_correct_previous_champion_and_both_decisions(sources, tmp_path):
    """Both challengers are judged against the same champion, then approved at once: whichever applies
    second holds a stale decision and must decide again against the new champion."""
    from flows.promote import promote

    name, (weak, strong, strong_b) = new_model(sources, "weak", "strong", "strong_b")
    promote(spec=spec_file(tmp_path, name, "relaxed", **RELAXED), version=weak)
    spec = spec_file(tmp_path, name, "manual", promotion__approval="manual", promotion__approval_timeout_seconds=120)

    runs = [promote_in_thread(spec=spec, version=v) for v in (strong, strong_b)]
    paused = [paused_run_id(tag) for _, _, tag in runs]
    for _, _, tag in runs:
        answer_when_paused(tag, approve=True, reason="race", approver="ana")
    asked_again = 0
    for thread, _, tag in runs:  # the stale one asks again if it beats the new champion
        asked_again += _answer_while_running(thread, tag, approve=True, reason="second look", approver="bo")
    outcomes = [out["state"].result() for _, out, _ in runs]
    assert all(o.action in ("promoted", "rejected") for o in outcomes)

    entries = alias_history(name)[1:]
    assert sorted(c.version for c in entries) == sorted([strong, strong_b])  # both decisions, once each
    first, second = entries
    assert (first.action, first.champion_before) == ("promoted", weak)
    assert second.champion_before == first.version  # decided again against the champion of its moment
    assert (second.by == "bo") == (second.action == "promoted") and asked_again == (second.action == "promoted")
    promoted = [c for c in entries if c.action == "promoted"]
    assert aliases(name) == (promoted[-1].version, promoted[-1].champion_before)
    assert len(set(paused)) == 2


def _answer_while_running(thread: threading.Thread, tag: str, **run_input) -> int:
    """Answer each new pause of the tagged run until its thread ends; how many were answered."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    answered = 0
    deadline = time.monotonic() + 180
    with get_client(sync_client=True) as client:
        def paused_run():
            # The thread may not have created its run yet: no run is "not paused", not an error.
            runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[tag])))
            return runs[0] if runs and runs[0].state is not None and runs[0].state.is_paused() else None

        while thread.is_alive() and time.monotonic() < deadline:
            run = paused_run()
            if run is not None:
                answer_when_paused(tag, **run_input)
                answered += 1
                # Until the run has left this pause (a second look too soon would answer it twice).
                leave_by = time.monotonic() + 30
                while thread.is_alive() and paused_run() is not None and time.monotonic() < leave_by:
                    time.sleep(0.2)
            time.sleep(0.3)
    thread.join(10)
    assert not thread.is_alive()
    return answered


def test_applying_a_decision_checks_the_champion_of_the_moment(sources, tmp_path):
    from leanops.results import Approval, PromotionDecision

    from flows.promote import promote

    name, (weak, strong) = new_model(sources, "weak", "strong")
    promote(spec=spec_file(tmp_path, name, "relaxed", **RELAXED), version=weak)
    auto = Approval(True, "policy:auto", source="policy")

    # Judged when there was no champion; there is one now: nothing moves, nothing is recorded.
    stale = apply_promotion(PromotionDecision(name, strong, None, "promote", (), "roc_auc", "k1", auto))
    assert stale.action == "stale"
    assert aliases(name) == (weak, None)
    assert len(alias_history(name)) == 1

    # An attempt that moved the aliases and died before recording: its retry records the move once.
    decision = PromotionDecision(name, strong, weak, "promote", (), "roc_auc", "k2", auto)
    registry.set_alias(name, registry.PREVIOUS_CHAMPION, weak)
    registry.set_alias(name, registry.CHAMPION, strong)
    recovered = apply_promotion(decision)
    assert (recovered.action, recovered.champion_before, recovered.previous_champion_after) == ("promoted", weak, weak)
    assert apply_promotion(decision).action == "noop"
    assert [c.action for c in alias_history(name)] == ["promoted", "promoted"]
    assert aliases(name) == (strong, weak)


# --- bad input ------------------------------------------------------------------------------------


def test_bad_inputs_get_clear_errors_and_leave_aliases_alone(sources, tmp_path, july):
    from flows.promote import promote

    with pytest.raises(ModelNotFound, match="no registered model 'promote-never-registered'"):
        promote(spec=spec_file(tmp_path, "promote-never-registered"))

    name, (v1, v2) = new_model(sources, "strong", "strong_b")
    spec = spec_file(tmp_path, name)
    promote(spec=spec, version=v1)
    assert aliases(name) == (v1, None)

    with pytest.raises(ModelNotFound, match="has no version '99'"):
        promote(spec=spec, version="99")
    with pytest.raises(ModelNotFound, match="has no alias 'challenger'"):
        promote(spec=spec)  # no challenger alias was ever set

    registry.set_alias(name, registry.CHALLENGER, v2)
    registry.client().delete_model_version(name, v2)
    with pytest.raises(ModelNotFound, match="has no alias 'challenger'.*deleted"):
        promote(spec=spec)

    with pytest.raises(SpecError, match="approval must be 'auto' or 'manual'"):
        promote(spec=spec, version=v1, approval="sometimes")

    broken = str(tmp_path / "broken.parquet")
    storage.write_table(storage.read_table(july)[0].drop(columns=["carrier"]), broken)
    with pytest.raises(ContractViolation, match="carrier"):
        promote(spec=spec, version=v1, batch_uri=broken)

    assert aliases(name) == (v1, None)
    assert [c.action for c in alias_history(name)] == ["promoted"]


# --- failures reach a person ----------------------------------------------------------------------


def test_a_degradation_after_the_last_rollback_is_reported_and_failed_runs_alert(sources, tmp_path, july, slack):
    """After one rollback there is no previous champion: the next degradation keeps the champion and says
    so in Slack (no crash); a promote or rollback that fails tells Slack too."""
    import os

    from leanops.settings import reset_settings_cache

    from flows.promote import promote
    from flows.rollback import rollback

    name, (weak, strong) = new_model(sources, "weak", "strong")
    promote(spec=spec_file(tmp_path, name, "relaxed", **RELAXED), version=weak)
    spec = spec_file(tmp_path, name)
    promote(spec=spec, version=strong)
    assert rollback(spec=spec, reason="bad release").action == "rolled_back"
    assert aliases(name) == (weak, None)

    os.environ.update(LEANOPS_SLACK_TOKEN="xoxb-promote-e2e", LEANOPS_SLACK_BASE_URL=slack.base_url)
    reset_settings_cache()
    try:
        state = rollback(spec=spec, batch_uri=july, reason=f"degraded on {july}", return_state=True)
        failed_promote = promote(spec=spec, version="99", return_state=True)
        failed_rollback = rollback(spec=spec, return_state=True)
    finally:
        os.environ.pop("LEANOPS_SLACK_TOKEN")
        os.environ.pop("LEANOPS_SLACK_BASE_URL")
        reset_settings_cache()

    assert state.is_completed()
    kept = state.result()
    assert (kept.action, kept.champion_before, kept.champion_after) == ("kept", weak, weak)
    assert "no previous-champion to roll back to" in kept.reason and july in kept.reason
    assert aliases(name) == (weak, None)
    assert failed_promote.is_failed() and failed_rollback.is_failed()
    titles = [post["blocks"][0]["text"]["text"] for post in slack.posts()]
    assert any(f"nothing to roll back to: champion v{weak} stays" in t for t in titles)
    assert any("promote run" in t and "failed" in t for t in titles)
    assert any("rollback run" in t and "failed" in t for t in titles)
