"""The soak loop's table (tests/reliability/soak.py): a test's streak counts the rounds it passed since its
last failure, so a flaky test never reads as solid."""

from reliability.soak import table


def test_a_streak_restarts_after_a_failure_and_failures_are_counted():
    rounds = [
        {"m::flaky": ("passed", 1.0), "m::solid": ("passed", 2.0)},
        {"m::flaky": ("failed", 9.0), "m::solid": ("passed", 2.0)},
        {"m::flaky": ("passed", 1.0), "m::solid": ("passed", 4.0)},
    ]

    lines = {line.split()[0]: line.split()[1:] for line in table(rounds).splitlines()[1:]}

    assert lines["m::flaky"] == ["1", "of", "3", "1", "1.0", "9.0"]
    assert lines["m::solid"] == ["3", "of", "3", "0", "2.0", "4.0"]


def test_recorded_rounds_resume_only_on_the_code_they_ran(tmp_path):
    from reliability.soak import load_record, save_record

    record = tmp_path / "soak-record.json"
    passed = [{"m::a": ("passed", 1.0)}, {"m::a": ("passed", 2.0)}]
    stamps = [{"round": 1, "seconds": 700}, {"round": 2, "seconds": 710}]
    save_record(record, "code-1", passed, stamps)

    assert load_record(record, "code-1") == (passed, "resuming after 2 recorded round(s) of this code")
    rounds, why = load_record(record, "code-2")
    assert rounds == [] and "ran other code" in why
    rounds, why = load_record(record, None)
    assert rounds == [] and "uncommitted changes" in why

    save_record(record, "code-1", [*passed, {"m::a": ("failed", 9.0)}], [*stamps, {"round": 3, "seconds": 720}])
    rounds, why = load_record(record, "code-1")
    assert rounds == [] and "ended in a failure" in why


def test_only_files_the_e2e_tests_exercise_make_the_code_identity():
    from reliability.soak import exercised

    assert all(exercised(p) for p in ("leanops/registry.py", "tests/e2e/test_cli.py", "prefect.yaml", "uv.lock", "docs/runbook.md"))
    assert not any(exercised(p) for p in ("bench/bench_lock.py", "sim/plan.py", "docs/scale.md", "docs/soak-record.json", "README.md"))


def test_a_round_whose_session_is_killed_is_interrupted_not_failed(tmp_path):
    """Stopping a soak by hand kills its pytest session: that round says nothing of the tests, so it must
    neither be recorded as a failure (ending the streak) nor as a pass."""
    from reliability.soak import run_round

    killed = tmp_path / "test_killed.py"
    killed.write_text(
        "import os, signal\nimport pytest\n\npytestmark = pytest.mark.e2e\n\n"
        "def test_session_killed():\n    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    passed, outcomes, failures = run_round(1, tmp_path, [str(killed)], workers=0)

    assert (passed, outcomes, failures) == (None, {}, {})
    assert (tmp_path / "round-1.log").exists()


def test_a_failed_round_keeps_what_each_failed_test_printed(tmp_path):
    """The record outlives the round's log (a soak's clone may be gone when someone reads it)."""
    from reliability.soak import run_round

    failing = tmp_path / "test_failing.py"
    failing.write_text(
        "import pytest\n\npytestmark = pytest.mark.e2e\n\n"
        "def test_waits_in_vain():\n    raise AssertionError('timed out waiting for the promote run; automations: none')\n\n"
        "def test_fine():\n    pass\n"
    )
    passed, outcomes, failures = run_round(1, tmp_path, [str(failing)], workers=0)

    assert passed is False
    assert [outcome for outcome, _ in outcomes.values()] == ["failed", "passed"]
    [(test, report)] = failures.items()
    assert test.endswith("::test_waits_in_vain") and "timed out waiting for the promote run; automations: none" in report


def test_a_stop_time_already_past_today_means_tomorrow():
    from datetime import datetime, timedelta

    from reliability.soak import stop_by_time

    late_evening = datetime(2026, 12, 1, 23, 50)

    assert stop_by_time("02:58", late_evening) == datetime(2026, 12, 2, 2, 58).timestamp()
    assert stop_by_time("23:55", late_evening) == (late_evening + timedelta(minutes=5)).timestamp()
