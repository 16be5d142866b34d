"""The S3 event bridge end to end: moto's S3 + SQS, the bridge process, a real Prefect server."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import pytest

from leanops import storage
from leanops.events import BATCH_LANDED
from support import read_events, s3_notification, wait_for

pytestmark = pytest.mark.e2e

DEADLINE = 30.0  # the events API shows an event once the server's persister flushed it (~1-2 s)


def landed_events(api_url: str, resource_id: str) -> list[dict]:
    return read_events(api_url, BATCH_LANDED, resource_id)


def drained(queue_url: str) -> bool:
    return storage.queue_counts(queue_url) == (0, 0)


def settled_events(api_url: str, resource_id: str, queue_url: str) -> list[dict]:
    """Events for the resource once the queue is empty and the persister had time to flush."""
    wait_for(lambda: landed_events(api_url, resource_id), f"an event for {resource_id}")
    wait_for(lambda: drained(queue_url), "the queue to drain")
    time.sleep(2.5)  # > the persister's 1 s flush interval: a second event would show by now
    return landed_events(api_url, resource_id)


def unique_key(stem: str) -> str:
    return f"incoming/{stem} {uuid.uuid4().hex[:8]} été.parquet"


def test_an_object_put_in_s3_becomes_exactly_one_event(s3_bridge, prefect_server, settings):
    queue_url, _ = s3_bridge
    key = unique_key("july flights")
    uri = f"s3://{settings.s3_bucket}/{key}"

    storage.write_bytes(uri, b"PAR1 not really parquet", settings)

    [event] = settled_events(prefect_server, uri, queue_url)
    assert event["event"] == BATCH_LANDED
    assert event["resource"]["prefect.resource.id"] == uri
    assert event["payload"]["key"] == key
    assert event["payload"]["size"] == len(b"PAR1 not really parquet")


def test_objects_outside_the_prefix_or_suffix_give_no_event(s3_bridge, prefect_server, settings):
    queue_url, _ = s3_bridge
    inside = f"s3://{settings.s3_bucket}/{unique_key('inside')}"
    outside = [f"s3://{settings.s3_bucket}/archive/x-{uuid.uuid4().hex}.parquet",
               f"s3://{settings.s3_bucket}/incoming/x-{uuid.uuid4().hex}.csv"]

    for uri in outside + [inside]:
        storage.write_bytes(uri, b"data", settings)

    # The last put's event shows; the two before it produced none.
    assert len(settled_events(prefect_server, inside, queue_url)) == 1
    assert [landed_events(prefect_server, uri) for uri in outside] == [[], []]


def test_five_deliveries_of_one_notification_give_one_event(s3_bridge, prefect_server, settings):
    queue_url, _ = s3_bridge
    key = unique_key("redelivered")
    body = s3_notification(settings.s3_bucket, key)

    for _ in range(5):
        storage.send_message(queue_url, body, settings)

    events = settled_events(prefect_server, f"s3://{settings.s3_bucket}/{key}", queue_url)
    assert len(events) == 1


def test_a_malformed_message_is_dead_lettered_and_the_bridge_goes_on(s3_bridge, prefect_server, settings):
    from infra import services, stack

    queue_url, dead_letter_url = s3_bridge
    junk = f"this is not a notification {uuid.uuid4().hex}"

    storage.send_message(queue_url, junk, settings)

    def junk_in_dead_letters():
        for message in storage.receive_messages(dead_letter_url, wait_seconds=1, settings=settings, visibility_timeout=1):
            if message.body == junk:
                storage.delete_message(dead_letter_url, message.receipt_handle, settings)
                return True
        return False

    wait_for(junk_in_dead_letters, "the junk message in the dead-letter queue")
    assert services.status(stack.bridge(settings), settings.home) == "running"
    # ... and the next real object still becomes an event.
    uri = f"s3://{settings.s3_bucket}/{unique_key('after junk')}"
    storage.write_bytes(uri, b"data", settings)
    assert len(settled_events(prefect_server, uri, queue_url)) == 1


@pytest.fixture
def private_queues(s3_endpoint, settings):
    """A queue pair no running bridge reads, for bridges this test starts and kills itself."""
    name = f"kill-test-{uuid.uuid4().hex[:8]}"
    attributes = {"VisibilityTimeout": str(settings.sqs_visibility_timeout_seconds)}
    queue_url, _ = storage.ensure_queue(name, settings, attributes=attributes)
    storage.ensure_queue(f"{name}-dead", settings)
    env = {**os.environ, "LEANOPS_SQS_QUEUE_NAME": name, "LEANOPS_SQS_DEAD_LETTER_QUEUE_NAME": f"{name}-dead"}
    return queue_url, env


def test_a_bridge_killed_between_receive_and_post_loses_nothing(private_queues, prefect_server, settings):
    queue_url, env = private_queues
    key = unique_key("survives a crash")
    uri = f"s3://{settings.s3_bucket}/{key}"
    storage.send_message(queue_url, s3_notification(settings.s3_bucket, key), settings)
    bridge = [sys.executable, "-m", "deployments.s3_bridge"]

    crashed = subprocess.run([*bridge, "--once", "--fault", "kill-after-receive"], env=env, capture_output=True, text=True, timeout=120)

    assert crashed.returncode == -9, crashed.stderr  # SIGKILL: no cleanup ran
    assert "SIGKILL after receiving" in crashed.stderr
    assert storage.queue_counts(queue_url) == (0, 1)  # received, not deleted: hidden until the timeout
    assert landed_events(prefect_server, uri) == []

    restarted = subprocess.run([*bridge, "--max-messages", "1"], env=env, capture_output=True, text=True, timeout=120)

    assert restarted.returncode == 0, restarted.stderr
    assert "emitted=1" in restarted.stderr
    assert len(wait_for(lambda: landed_events(prefect_server, uri), f"the event for {uri}")) == 1
    assert drained(queue_url)


def test_the_lambda_handler_posts_events_and_reports_failed_records(prefect_server, settings):
    from deployments.lambda_handler import handler

    key = unique_key("via lambda")
    records = [
        {"eventSource": "aws:sqs", "messageId": "good", "body": s3_notification(settings.s3_bucket, key)},
        {"eventSource": "aws:sqs", "messageId": "junk", "body": "{"},
    ]

    answer = handler({"Records": records}, None, {"PREFECT_API_URL": prefect_server})

    assert answer == {"batchItemFailures": [{"itemIdentifier": "junk"}]}
    assert len(wait_for(lambda: landed_events(prefect_server, f"s3://{settings.s3_bucket}/{key}"), "the lambda's event")) == 1


def test_the_lambda_handler_reports_an_unreachable_prefect_as_a_failed_record(settings):
    from deployments.lambda_handler import handler

    body = s3_notification(settings.s3_bucket, unique_key("nowhere"))
    closed_port = "http://127.0.0.1:9/api"  # discard port: nothing listens

    answer = handler({"Records": [{"eventSource": "aws:sqs", "messageId": "m", "body": body}]}, None, {"PREFECT_API_URL": closed_port})

    assert answer == {"batchItemFailures": [{"itemIdentifier": "m"}]}
