"""Slack alerts against a real HTTP server on 127.0.0.1 standing in for Slack's Web API (via base_url).

Dedup design under test: first (model, kind) alert -> top-level message; the same alert within the
cooldown -> nothing sent (suppressed, counted); after the cooldown -> a reply in the first message's
thread mentioning the suppressed ones.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone

import pytest

from fake_slack import FakeSlack
from leanops.notify import Alert, Notifier, in_window, parse_window
from leanops.settings import Settings

TOKEN = "xoxb-test-secret-token"


class Clock:
    def __init__(self, start: datetime):
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def make_settings(tmp_path, slack: FakeSlack, **overrides) -> Settings:
    values = dict(
        home=tmp_path,
        slack_token=TOKEN,
        slack_base_url=slack.base_url,
        slack_channel="#mlops-alerts",
        alert_cooldown_minutes=60,
        alert_maintenance_window=None,
    )
    return Settings(**{**values, **overrides})


DRIFT = Alert(
    model="flights-delay",
    kind="drift",
    title="Data drift in 4 of 9 features",
    fields={"drifted": "origin, carrier, dest, distance", "share": "44%", "batch": "s3://leanops/incoming/2013-07.parquet"},
    links={"Evidently report": "http://127.0.0.1:5050/report.html", "batch": "s3://leanops/incoming/2013-07.parquet"},
)
NOON = datetime(2013, 7, 15, 12, 0, tzinfo=timezone.utc)


def test_first_alert_is_a_message_repeats_are_suppressed_then_threaded_after_the_cooldown(tmp_path, slack):
    clock = Clock(NOON)
    notifier = Notifier(make_settings(tmp_path, slack), clock=clock)

    first = notifier.send(DRIFT)
    clock.now += timedelta(minutes=10)
    second = notifier.send(DRIFT)
    third = notifier.send(DRIFT)
    other_kind = notifier.send(Alert("flights-delay", "degraded", "ROC AUC 0.61 < holdout 0.67 - 0.05"))
    clock.now += timedelta(minutes=61)
    later = notifier.send(DRIFT)

    assert [o.status for o in (first, second, third, other_kind, later)] == ["sent", "suppressed", "suppressed", "sent", "threaded"]
    posts = slack.posts()
    assert len(posts) == 3
    top, degraded, reply = posts
    assert top["channel"] == "#mlops-alerts" and "thread_ts" not in top
    assert top["blocks"][0] == {"type": "header", "text": {"type": "plain_text", "text": ":warning: flights-delay: Data drift in 4 of 9 features", "emoji": True}}
    assert {"type": "mrkdwn", "text": "*drifted*\norigin, carrier, dest, distance"} in top["blocks"][1]["fields"]
    links = top["blocks"][2]["elements"][0]["text"]
    assert "<http://127.0.0.1:5050/report.html|Evidently report>" in links and "batch: `s3://leanops/incoming/2013-07.parquet`" in links
    assert top["text"].startswith("[drift] flights-delay: Data drift in 4 of 9 features")
    assert "thread_ts" not in degraded and degraded["blocks"][0]["text"]["text"].startswith(":chart_with_downwards_trend:")
    assert reply["thread_ts"] == first.ts and reply["channel"] == "C0ALERTS"
    assert "2 similar alerts suppressed since 2013-07-15 12:10 UTC" in json.dumps(reply["blocks"])
    assert slack.requests[0]["headers"]["Authorization"] == f"Bearer {TOKEN}"


def test_dedup_state_survives_a_new_notifier_instance(tmp_path, slack):
    settings = make_settings(tmp_path, slack)
    first = Notifier(settings, clock=Clock(NOON)).send(DRIFT)

    again = Notifier(settings, clock=Clock(NOON + timedelta(minutes=30))).send(DRIFT)
    after_cooldown = Notifier(settings, clock=Clock(NOON + timedelta(minutes=90))).send(DRIFT)

    assert (first.status, again.status, after_cooldown.status) == ("sent", "suppressed", "threaded")
    assert after_cooldown.thread_ts == first.ts
    assert len(slack.posts()) == 2
    state = json.loads((tmp_path / "notify" / "slack-alerts.json").read_text())
    assert state["threads"]["flights-delay:drift"]["ts"] == first.ts
    assert TOKEN not in (tmp_path / "notify" / "slack-alerts.json").read_text()


def test_resolved_or_stale_threads_start_a_new_message(tmp_path, slack):
    clock = Clock(NOON)
    notifier = Notifier(make_settings(tmp_path, slack), clock=clock)
    notifier.send(DRIFT)

    notifier.resolve("flights-delay", "drift")
    reopened = notifier.send(DRIFT)
    clock.now += timedelta(days=8)
    stale = notifier.send(DRIFT)

    assert (reopened.status, stale.status) == ("sent", "sent")
    assert all("thread_ts" not in p for p in slack.posts()) and len(slack.posts()) == 3


def test_rate_limit_429_is_retried_after_retry_after(tmp_path, slack):
    slack.script.append((429, {"Retry-After": "1"}, {"ok": False, "error": "ratelimited"}, 0.0))

    outcome = Notifier(make_settings(tmp_path, slack), clock=Clock(NOON)).send(DRIFT)

    assert outcome.status == "sent"
    assert len(slack.posts()) == 2  # the refused attempt and the retry


def test_server_errors_are_retried_then_reported_without_raising(tmp_path, slack):
    slack.script += [(503, {}, {"ok": False}, 0.0), (502, {}, {"ok": False}, 0.0)]
    notifier = Notifier(make_settings(tmp_path, slack), clock=Clock(NOON), max_retries=2)

    recovered = notifier.send(DRIFT)
    slack.script += [(500, {}, {"ok": False, "error": "internal"}, 0.0)] * 3
    failed = notifier.send(Alert("flights-delay", "run_failed", "retrain flow failed"))
    retried_later = notifier.send(Alert("flights-delay", "run_failed", "retrain flow failed"))

    assert recovered.status == "sent" and len(slack.posts()) == 7  # 3 attempts, 3 attempts, then 1
    assert failed.status == "failed" and "500" in failed.detail
    assert retried_later.status == "sent"  # a failed send does not start a cooldown


def test_a_timeout_is_retried(tmp_path, slack):
    slack.script.append((200, {}, None, 1.5))

    outcome = Notifier(make_settings(tmp_path, slack), clock=Clock(NOON), timeout_seconds=0.5).send(DRIFT)

    assert outcome.status == "sent" and len(slack.posts()) == 2


def test_slack_refusing_the_message_is_an_outcome_not_an_exception(tmp_path, slack):
    slack.script.append((200, {}, {"ok": False, "error": "channel_not_found"}, 0.0))

    outcome = Notifier(make_settings(tmp_path, slack), clock=Clock(NOON)).send(DRIFT)

    assert outcome.status == "failed" and "channel_not_found" in outcome.detail and len(slack.posts()) == 1


def test_without_a_token_the_alert_is_logged_not_sent(tmp_path, slack, caplog):
    caplog.set_level(logging.DEBUG)

    outcome = Notifier(make_settings(tmp_path, slack, slack_token=None), clock=Clock(NOON)).send(DRIFT)

    assert outcome.status == "logged" and slack.requests == []
    assert "alert logged, not sent: [drift] flights-delay: Data drift in 4 of 9 features" in caplog.text


def test_maintenance_window_silences_alerts(tmp_path, slack, caplog):
    settings = make_settings(tmp_path, slack, alert_maintenance_window="22:00-02:00")

    inside = Notifier(settings, clock=Clock(datetime(2013, 7, 15, 23, 30, tzinfo=timezone.utc))).send(DRIFT)
    after_midnight = Notifier(settings, clock=Clock(datetime(2013, 7, 16, 1, 59, tzinfo=timezone.utc))).send(DRIFT)
    outside = Notifier(settings, clock=Clock(datetime(2013, 7, 16, 2, 0, tzinfo=timezone.utc))).send(DRIFT)

    assert (inside.status, after_midnight.status, outside.status) == ("silenced", "silenced", "sent")
    assert len(slack.posts()) == 1 and "maintenance window 22:00-02:00" in caplog.text
    assert in_window(datetime(2013, 7, 15, 10, 0, tzinfo=timezone.utc), parse_window("09:00-11:00"))
    with pytest.raises(ValueError, match="HH:MM-HH:MM"):
        Notifier(make_settings(tmp_path, slack, alert_maintenance_window="late at night"))


def test_the_token_never_reaches_the_logs(tmp_path, slack, caplog):
    caplog.set_level(logging.DEBUG)
    slack.script.append((500, {}, {"ok": False}, 0.0))

    Notifier(make_settings(tmp_path, slack), clock=Clock(NOON), max_retries=0).send(DRIFT)

    assert caplog.records and TOKEN not in caplog.text


def test_concurrent_processes_post_one_top_level_message(tmp_path, slack):
    import os
    import subprocess
    import sys

    script = (
        "from leanops.notify import Alert, Notifier\n"
        "print(Notifier().send(Alert('flights-delay', 'drift', 'drift seen by several workers')).status)\n"
    )
    env = {**os.environ, "LEANOPS_HOME": str(tmp_path), "LEANOPS_SLACK_TOKEN": TOKEN, "LEANOPS_SLACK_BASE_URL": slack.base_url}
    workers = [subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True) for _ in range(4)]

    statuses = sorted(w.communicate(timeout=120)[0].strip() for w in workers)

    assert statuses == ["sent", "suppressed", "suppressed", "suppressed"]
    assert len(slack.posts()) == 1
