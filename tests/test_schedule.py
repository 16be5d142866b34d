"""Which scheduled retrains are due: every spec by its own cron, each due time once."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import yaml

from leanops import schedule
from leanops.errors import SpecError
from leanops.schedule import DueRetrain
from leanops.spec import Spec, default_cron, parse_spec
from support import spec_copy

SUNDAY = datetime(2026, 11, 29, tzinfo=timezone.utc)  # a Sunday, 00:00
SUNDAY_0203 = SUNDAY.replace(hour=2, minute=3)
HOUR = timedelta(minutes=60)


def spec_with(tmp_path, name: str, **schedule_fields) -> Spec:
    path = spec_copy(tmp_path, name, **{f"schedule__{k}": v for k, v in schedule_fields.items()})
    return parse_spec(yaml.safe_load(path.read_text()), str(path))


def test_the_default_schedule_is_weekly_on_sunday_night_at_a_minute_of_the_model_s_own(tmp_path):
    spec = spec_with(tmp_path, "weekly")
    due_at = SUNDAY.replace(hour=2, minute=29)  # default_cron("weekly")

    assert spec.schedule.cron == default_cron("weekly") == "29 2 * * 0"
    assert schedule.due_retrains({"weekly": spec}, due_at + timedelta(minutes=3), HOUR) == [DueRetrain("weekly", "weekly", due_at)]
    assert schedule.due_retrains({"weekly": spec}, due_at - timedelta(minutes=1), HOUR) == []
    assert schedule.due_retrains({"weekly": spec}, due_at + timedelta(hours=2), HOUR) == []
    assert schedule.due_retrains({"weekly": spec}, due_at + timedelta(days=1), HOUR) == []


def test_a_hundred_models_with_the_default_schedule_do_not_all_retrain_at_once(tmp_path):
    """With one shared default time a hundred retrains queued at once behind two worker slots; the default
    spreads them over Sunday 00:00-05:59 by the model's name, the same time on every load."""
    specs = {f"m{m:03d}": spec_with(tmp_path, f"m{m:03d}") for m in range(100)}
    times = [schedule.last_fire_time(spec.schedule, SUNDAY.replace(hour=23)) for spec in specs.values()]

    assert all(SUNDAY <= at < SUNDAY.replace(hour=6) for at in times)
    per_hour = [sum(at.hour == hour for at in times) for hour in range(6)]
    assert max(per_hour) <= 30, per_hour  # ~17 an hour; one shared time would put all 100 in one hour
    assert max(times.count(at) for at in times) <= 4
    assert [spec_with(tmp_path, name).schedule.cron for name in specs] == [spec.schedule.cron for spec in specs.values()]


def test_a_cron_written_in_the_spec_is_kept(tmp_path):
    assert spec_with(tmp_path, "sunday-two", cron="0 2 * * 0").schedule.cron == "0 2 * * 0"
    assert spec_with(tmp_path, "no-schedule", cron=None).schedule.cron is None


def test_a_due_time_is_due_exactly_at_its_minute_and_until_the_lookback_ends(tmp_path):
    spec = spec_with(tmp_path, "hourly", cron="0 * * * *")
    at = datetime(2026, 11, 30, 10, 0, tzinfo=timezone.utc)

    assert [d.due_at for d in schedule.due_retrains({"hourly": spec}, at, HOUR)] == [at]
    assert [d.due_at for d in schedule.due_retrains({"hourly": spec}, at + timedelta(minutes=59), timedelta(minutes=60))] == [at]
    assert schedule.due_retrains({"hourly": spec}, at + timedelta(minutes=30), timedelta(minutes=10)) == []


def test_passes_that_see_the_same_due_time_name_the_same_retrain(tmp_path):
    """The scheduler runs every few minutes: each pass within the lookback sees the same due time, and the
    same idempotency key makes Prefect return the run already created instead of starting a second."""
    spec = spec_with(tmp_path, "weekly", cron="0 2 * * 0")

    passes = [schedule.due_retrains({"weekly": spec}, SUNDAY_0203 + timedelta(minutes=m), HOUR) for m in (0, 5, 10, 55)]

    assert len({d.idempotency_key for [d] in passes}) == 1
    [first] = passes[0]
    assert first.idempotency_key == "leanops-schedule-weekly-20261129T0200Z"
    # The next week's time is a different retrain.
    [next_week] = schedule.due_retrains({"weekly": spec}, SUNDAY_0203 + timedelta(days=7), HOUR)
    assert next_week.idempotency_key != first.idempotency_key


def test_a_cron_is_read_in_the_spec_time_zone_with_daylight_saving(tmp_path):
    spec = spec_with(tmp_path, "paris", cron="0 2 * * *", timezone="Europe/Paris")
    winter = datetime(2026, 1, 15, 1, 5, tzinfo=timezone.utc)  # 02:05 in Paris (UTC+1)
    summer = datetime(2026, 7, 15, 0, 5, tzinfo=timezone.utc)  # 02:05 in Paris (UTC+2)

    [in_winter] = schedule.due_retrains({"paris": spec}, winter, timedelta(minutes=10))
    [in_summer] = schedule.due_retrains({"paris": spec}, summer, timedelta(minutes=10))

    assert in_winter.due_at == datetime(2026, 1, 15, 1, 0, tzinfo=timezone.utc)
    assert in_summer.due_at == datetime(2026, 7, 15, 0, 0, tzinfo=timezone.utc)


def test_a_spec_without_a_cron_never_retrains_on_a_schedule(tmp_path):
    spec = spec_with(tmp_path, "never", cron=None)

    assert schedule.last_fire_time(spec.schedule, SUNDAY_0203) is None
    assert schedule.due_retrains({"never": spec}, SUNDAY_0203, timedelta(days=365)) == []


def test_a_hundred_models_each_on_its_own_cron(tmp_path):
    """Model m retrains at minute m % 60 of every hour: at 10:40 with a 10-minute lookback, the models of
    minutes 31-40 are due (m031-m040 and m091-m099), each at its own minute."""
    specs = {f"m{m:03d}": spec_with(tmp_path, f"m{m:03d}", cron=f"{m % 60} * * * *") for m in range(100)}
    now = datetime(2026, 11, 30, 10, 40, tzinfo=timezone.utc)

    due = schedule.due_retrains(specs, now, timedelta(minutes=10))

    assert {d.model for d in due} == {f"m{m:03d}" for m in [*range(31, 41), *range(91, 100)]}
    assert all(d.due_at == now.replace(minute=int(d.model[1:]) % 60) for d in due)


def test_retired_models_are_left_out_and_listed(tmp_path):
    specs = {name: spec_with(tmp_path, name, cron="0 2 * * 0") for name in ("active", "retired")}
    due = schedule.due_retrains(specs, SUNDAY_0203, HOUR)

    plan = schedule.plan(due, {"retired"}, {})

    assert [d.model for d in plan.due] == ["active"]
    assert [d.model for d in plan.retired] == ["retired"]
    assert plan.summary() == "1 retrain(s) due: active; skipped (retired): retired"


def test_a_broken_spec_is_reported_and_does_not_stop_the_others(tmp_path):
    spec_copy(tmp_path, "good")
    spec_copy(tmp_path, "bad-cron", schedule__cron="0 25 * * *")
    (tmp_path / "not-yaml.yaml").write_text("name: [unclosed")

    folder = schedule.read_spec_folder(tmp_path)

    assert sorted(folder.specs) == ["good"]
    assert sorted(folder.errors) == ["bad-cron", "not-yaml"]
    assert "schedule.cron '0 25 * * *' is not a five-field cron expression: Bad hour" in folder.errors["bad-cron"]
    message = str(schedule.unreadable_specs_error(folder.errors))
    assert message.startswith("2 spec(s) could not be read, so their models were not scheduled")


def test_a_missing_specs_folder_is_a_clear_error(tmp_path):
    with pytest.raises(SpecError, match="no specs folder at .*LEANOPS_SPECS_DIR"):
        schedule.read_spec_folder(tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"cron": "0 2 * *"}, "schedule.cron '0 2 \\* \\*' is not a five-field cron expression"),
        ({"timezone": "Mars/Olympus"}, "schedule.timezone 'Mars/Olympus' is not an IANA time zone"),
    ],
)
def test_a_spec_with_an_impossible_schedule_fails_when_loaded(tmp_path, fields, message):
    with pytest.raises(SpecError, match=message):
        spec_with(tmp_path, "impossible", **fields)


def test_editing_a_specs_cron_or_description_keeps_its_training_identity(tmp_path):
    weekly = spec_with(tmp_path, "identity")
    daily = spec_with(tmp_path, "identity", cron="0 5 * * *")
    described = weekly.model_copy(update={"description": "a new text"})
    retuned = weekly.model_copy(update={"split": weekly.split.model_copy(update={"seed": 7})})

    assert daily.spec_hash == weekly.spec_hash == described.spec_hash
    assert retuned.spec_hash != weekly.spec_hash
