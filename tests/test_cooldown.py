from datetime import datetime, timedelta, timezone

from leanops.cooldown import decide_retrain

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
