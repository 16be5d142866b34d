from datetime import datetime, timedelta, timezone

import pytest

from leanops import cooldown
from leanops.cooldown import CooldownRecord, decide_retrain

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)


def test_drift_retrain_inside_the_cooldown_is_skipped():
    gate = decide_retrain("drift", NOW - timedelta(minutes=10), cooldown_minutes=60, now=NOW)
    assert not gate.allowed
    assert "3000 s left" in gate.explanation


def test_drift_retrain_after_the_cooldown_runs():
    assert decide_retrain("drift", NOW - timedelta(minutes=61), cooldown_minutes=60, now=NOW).allowed


def test_first_retrain_runs():
    assert decide_retrain("drift", None, cooldown_minutes=60, now=NOW).allowed


def test_scheduled_and_manual_retrains_ignore_the_cooldown():
    recent = NOW - timedelta(minutes=1)
    assert decide_retrain("schedule", recent, 60, now=NOW).allowed
    assert decide_retrain("manual", recent, 60, now=NOW).allowed


def test_a_failed_retrain_uses_up_no_cooldown():
    gate, record = cooldown.claim(CooldownRecord(), "drift", "run-1", 60, now=NOW)
    assert gate.allowed

    after_failure = record.released("run-1")

    assert cooldown.claim(after_failure, "drift", "run-2", 60, now=NOW + timedelta(minutes=5))[0].allowed
    assert after_failure.last_retrain_at is None


def test_a_successful_retrain_starts_the_cooldown_from_its_start():
    _, record = cooldown.claim(CooldownRecord(), "drift", "run-1", 60, now=NOW)

    done = record.succeeded("run-1")

    assert done == CooldownRecord(NOW, {})
    gate, _ = cooldown.claim(done, "drift", "run-2", 60, now=NOW + timedelta(minutes=20))
    assert not gate.allowed and "2400 s left" in gate.explanation


def test_a_running_retrain_turns_away_a_drift_retrain_but_not_its_own_retry():
    _, record = cooldown.claim(CooldownRecord(), "schedule", "weekly", 60, now=NOW)

    gate, unchanged = cooldown.claim(record, "drift", "on-drift", 60, now=NOW + timedelta(minutes=1))
    assert not gate.allowed and "running since" in gate.explanation and unchanged == record
    # A retry of the claiming task (same run) finds its own claim, not a rival.
    assert cooldown.claim(record, "schedule", "weekly", 60, now=NOW + timedelta(minutes=1))[0].allowed


def test_a_claim_of_a_run_killed_without_a_word_lapses_after_the_cooldown():
    _, record = cooldown.claim(CooldownRecord(), "drift", "killed", 60, now=NOW)

    assert not cooldown.claim(record, "drift", "next", 60, now=NOW + timedelta(minutes=59))[0].allowed
    assert cooldown.claim(record, "drift", "next", 60, now=NOW + timedelta(minutes=61))[0].allowed


def test_the_next_claim_settles_the_claims_of_runs_that_ended_without_a_word():
    """A killed run runs no hook; once the server records it as ended, its claim no longer blocks."""
    _, record = cooldown.claim(CooldownRecord(), "drift", "killed", 60, now=NOW)
    later = NOW + timedelta(minutes=1)

    gate, after = cooldown.claim(record, "drift", "next", 60, now=later, ended={"killed": False})
    assert gate.allowed and after == CooldownRecord(None, {"next": later})
    # A run that completed but could not settle its claim counts as the last retrain.
    gate, after = cooldown.claim(record, "drift", "next", 60, now=later, ended={"killed": True})
    assert not gate.allowed and "cooldown" in gate.explanation and after == CooldownRecord(NOW, {})
    # A run never settles its own claim by being listed: a retry of it keeps it.
    assert cooldown.claim(record, "drift", "killed", 60, now=later, ended={"killed": False})[1] == record


@pytest.mark.parametrize("stored, expected", [
    (None, CooldownRecord()),
    ("2026-11-27T12:00:00+00:00", CooldownRecord(NOW)),  # the earlier format: the last retrain's start
    (CooldownRecord(NOW, {"r": NOW}).to_json(), CooldownRecord(NOW, {"r": NOW})),
])
def test_the_record_reads_back_what_was_stored(stored, expected):
    assert CooldownRecord.from_json(stored) == expected


@pytest.mark.e2e
def test_claims_against_the_prefect_server_are_atomic_and_a_failed_run_releases_its_claim(prefect_server, tmp_path):
    """Four drift retrains of one model claim at once: one wins. A run that claims and then fails gives its claim back."""
    import uuid
    from concurrent.futures import ThreadPoolExecutor

    from prefect import flow

    from leanops.spec import load_spec
    from support import spec_copy
    from tasks.cooldown import claim_retrain, last_retrain_at, release_retrain_claim

    @flow
    def claim_only(spec: str) -> bool:
        return claim_retrain(load_spec(spec), "drift").allowed

    @flow(on_failure=[release_retrain_claim])
    def failing_retrain(spec: str) -> None:
        claim_retrain(load_spec(spec), "drift")
        raise RuntimeError("training broke")

    racing = str(spec_copy(tmp_path, f"cooldown-{uuid.uuid4().hex[:6]}"))
    with ThreadPoolExecutor(4) as pool:
        allowed = list(pool.map(lambda _: claim_only(racing), range(4)))
    assert sorted(allowed) == [False, False, False, True]

    failing = str(spec_copy(tmp_path, f"cooldown-{uuid.uuid4().hex[:6]}"))
    assert failing_retrain(spec=failing, return_state=True).is_failed()
    assert last_retrain_at(load_spec(failing)) is None
    assert claim_only(failing)  # the failed run gave its claim back: the next drift retrain runs
