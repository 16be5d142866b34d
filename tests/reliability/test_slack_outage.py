"""Scenario 6: Slack answers 429 with Retry-After, then 500, then times out.

Slack is a real HTTP server on 127.0.0.1 (tests/fake_slack.py) scripted to fail that way; the alerting flow
is the real drift-monitor, rejecting a batch that breaks its contract (its failure hook alerts). The
notifier retries twice (three attempts), so 429 -> 500 -> timeout exhausts it: the run still ends with its
own error, and the alert is logged as undelivered, not lost in silence. Once Slack is back, the next
rejected batch is delivered exactly once, even though its first two attempts met 429 and 500 again, and the
undelivered alert left no dedup state that would suppress it.

A timed-out post is scripted as one Slack never processed. If Slack did process it, the retry posts it a
second time: chat.postMessage has no idempotency key, and leanops.notify prefers a rare duplicate to a
lost alert."""

from __future__ import annotations

import logging
import time

import pytest

from leanops import datasets, registry, storage
from leanops.errors import ContractViolation
from reliability.faults import processed_mark
from support import environment, wait_for

pytestmark = pytest.mark.e2e

SLACK_TOKEN = "xoxb-reliability"
# leanops.notify's client timeout in flows (Notifier's default): the hanging answer comes just after it.
CLIENT_TIMEOUT_SECONDS = 10.0
RATE_LIMITED = (429, {"Retry-After": "1"}, {"ok": False, "error": "ratelimited"}, 0.0)
SERVER_ERROR = (500, {}, {"ok": False, "error": "internal_error"}, 0.0)
HANGS = (200, {}, {"ok": False, "error": "request_timeout"}, CLIENT_TIMEOUT_SECONDS + 0.5)


def land_bad_batch(stack, name: str, key: str) -> str:
    """A batch whose origin column holds an airport the contract does not allow."""
    frame = datasets.flights_sample([8], rows_per_month=600, seed=17)
    frame = frame.assign(origin=frame["origin"].where(frame.index % 50 != 0, "PHL"))
    return storage.write_table(frame, f"s3://{stack.s3_bucket}/checks/{name}/{key}")


def drift_monitor(slack, **parameters):
    from flows.drift_monitor import drift_monitor as flow

    with environment(LEANOPS_SLACK_TOKEN=SLACK_TOKEN, LEANOPS_SLACK_BASE_URL=slack.base_url):
        return flow(**parameters, return_state=True)


def alerts_naming(posts: list[dict], uri: str) -> list[dict]:
    return [post for post in posts if uri in str(post.get("blocks"))]


def test_slack_failing_every_way_logs_the_alert_and_the_next_one_is_delivered_once(small_champion, stack, slack, record, caplog):
    row = record("6 Slack 429, 500, timeout, then back", "429 Retry-After, 500, timeout; 429, 500")
    name, spec = small_champion["name"], str(small_champion["spec_path"])
    first_uri = land_bad_batch(stack, name, "2013-08-slack-down.parquet")
    second_uri = land_bad_batch(stack, name, "2013-08-slack-back.parquet")
    caplog.set_level(logging.ERROR, logger="leanops.notify")

    slack.script += [RATE_LIMITED, SERVER_ERROR, HANGS]
    started = time.monotonic()
    failed = drift_monitor(slack, spec=spec, batch_uri=first_uri)
    took = time.monotonic() - started

    # The run ends with its own error, not Slack's, and within the notifier's bounded retries.
    assert failed.is_failed()
    with pytest.raises(ContractViolation, match="origin.*PHL"):
        failed.result()
    assert took < 40, f"drift-monitor took {took:.0f} s with Slack failing"
    attempts = alerts_naming(slack.posts(), first_uri)
    # The hanging answer is written after the client gave up.
    wait_for(lambda: all(r["answer"] for r in slack.requests), "the fake Slack to answer the timed-out post", 10)
    assert [r["answer"]["status"] for r in slack.requests] == [429, 500, 200] and len(attempts) == 3
    assert slack.delivered() == []
    undelivered = [r for r in caplog.records if r.name == "leanops.notify" and f"{name}:contract_violation" in r.getMessage()]
    assert len(undelivered) == 1 and "Slack unreachable" in undelivered[0].getMessage(), [r.getMessage() for r in caplog.records]
    assert processed_mark(first_uri).status.startswith("rejected: ContractViolation")

    slack.script += [RATE_LIMITED, SERVER_ERROR]
    requests_before = len(slack.requests)
    recovered_from = time.monotonic()
    rejected = drift_monitor(slack, spec=spec, batch_uri=second_uri)

    assert rejected.is_failed()
    with pytest.raises(ContractViolation, match="origin.*PHL"):
        rejected.result()
    assert [r["answer"]["status"] for r in slack.requests[requests_before:]] == [429, 500, 200]
    (delivered,) = slack.delivered()
    assert "thread_ts" not in delivered  # a new top-level message: the undelivered alert left no dedup state
    assert alerts_naming([delivered], second_uri) == [delivered] and alerts_naming([delivered], first_uri) == []
    assert delivered["blocks"][0]["text"]["text"].startswith(f":no_entry: {name}: drift-monitor: batch rejected by its data contract")
    assert processed_mark(second_uri).status.startswith("rejected: ContractViolation")
    assert registry.get_champion(name).version == small_champion["version"]
    row.survived, row.recover_seconds = True, time.monotonic() - recovered_from
    row.data_lost = "none (1 alert logged undelivered, 1 delivered once)"
