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
