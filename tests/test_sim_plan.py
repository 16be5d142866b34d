"""The simulator's clock, compression and backlog rules (sim/plan.py): pure logic, no stack."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from sim import plan


def test_batches_of_an_hour_are_spread_over_it_in_model_order_and_hours_follow_each_other():
    landings = plan.landings(n_models=4, total_hours=3, compression=360.0, first_hour=1)
    # 360x: a simulated hour is 10 real seconds, four models 2.5 s apart.
    assert [(x.hour, x.model_index, x.real_offset) for x in landings[:5]] == [
        (1, 0, 10.0), (1, 1, 12.5), (1, 2, 15.0), (1, 3, 17.5), (2, 0, 20.0),
    ]
    assert len(landings) == 8


def test_weekly_retrains_fall_on_simulated_sundays_at_two_utc():
    saturday_evening = datetime(2026, 11, 28, 20, 0, tzinfo=timezone.utc)
    assert plan.week_boundaries(saturday_evening, 24 * 30) == [6, 174, 342, 510, 678]
    sunday_three = datetime(2026, 11, 29, 3, 0, tzinfo=timezone.utc)
    assert plan.week_boundaries(sunday_three, 48) == []
    assert plan.week_boundaries(sunday_three, 24 * 8) == [167]


def test_the_clock_maps_real_seconds_and_cooldowns_onto_simulated_time():
    clock = plan.SimClock(real_start=1000.0, compression=120.0)
    assert clock.real_at(1.0) == 1030.0
    assert clock.simulated_at(1030.0) == plan.DEFAULT_START.replace(hour=21)
    assert clock.real_minutes(360.0) == 3.0


def test_compression_follows_the_measured_cost_of_a_check_and_the_model_count():
    # 6 checks in 30 s: 0.2 checks/s. 10 models need 10 checks per simulated hour: 50 s, x2 headroom: 100 s.
    assert plan.derive_compression(10, 6, 30.0).value == pytest.approx(36.0)
    assert plan.derive_compression(100, 6, 30.0).value == pytest.approx(3.6)
    assert plan.derive_compression(1, 60, 1.0).value == 3600.0  # capped: one simulated hour per real second
    with pytest.raises(ValueError, match="cannot derive"):
        plan.derive_compression(10, 0, 30.0)


def test_a_backlog_stops_the_step_when_checks_outrun_the_limit_or_keep_growing():
    watch = plan.BacklogWatch(n_models=10, limit_hours=3.0, window=4)
    assert [watch.observe(n) for n in (5, 12, 8, 9, 10)] == [None] * 5  # noisy, not growing past one hour
    assert watch.observe(11) == "drift checks outstanding grew 4 samples in a row to 11"
    assert "more than 3 simulated hours" in plan.BacklogWatch(n_models=10).observe(31)


def test_the_bottleneck_is_where_most_outstanding_work_waits():
    assert plan.name_bottleneck(0, 0, 0, 0, 0.2) == "none"
    assert plan.name_bottleneck(2, 9, 1, 3, 0.5) == "worker pickup (Scheduled/Late): 9 waiting"
    assert plan.name_bottleneck(0, 1, 0, 7, 0.97) == "execution (Running, CPU 97% busy): 7 waiting"


def test_models_drift_or_degrade_a_quarter_into_the_run_and_the_rest_stay_stable():
    kinds = [plan.model_kind(i) for i in range(10)]
    assert kinds.count("stable") == 6 and kinds.count("drifting") == 2 and kinds.count("degrading") == 2
    drifting, degrading = kinds.index("drifting"), kinds.index("degrading")
    assert [plan.batch_source(kinds[drifting], h, 24) for h in (0, 5, 6, 23)] == ["base", "base", "summer", "summer"]
    assert plan.batch_source(kinds[degrading], 6, 24) == "shuffled"
    assert plan.batch_source("stable", 23, 24) == "base"


def test_percentiles_are_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert (plan.percentile(values, 50), plan.percentile(values, 95)) == (50.0, 95.0)
    assert plan.percentile([], 95) is None
    assert plan.spread([1.0, 2.0, 3.0]) == "2.0 / 3.0 / 3.0 s (n=3)"
