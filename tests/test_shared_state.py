"""Alert state shared by workers through the object store (moto's real S3 endpoint): one worker's
alert suppresses the same alert on another worker, and concurrent writers never lose an update."""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import pytest

from leanops import shared_state, storage
from leanops.errors import TransientIOError
from leanops.notify import Alert, Notifier
from leanops.settings import Settings

NOON = datetime(2013, 7, 15, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def bucket(s3_endpoint, settings):
    storage.ensure_bucket(settings.s3_bucket, settings)
    return settings.s3_bucket


def test_an_alert_sent_by_worker_a_is_suppressed_on_worker_b(bucket, settings, slack, tmp_path):
    state_uri = f"s3://{bucket}/state/{uuid.uuid4().hex}/slack-alerts.json"
    workers = [
        Settings(home=tmp_path / name, s3_port=settings.s3_port, slack_token="xoxb-t", slack_base_url=slack.base_url,
                 alert_state_uri=state_uri)
        for name in ("worker-a", "worker-b")
    ]
    alert = Alert(model="flights-delay", kind="drift", title="Data drift in 2 of 9 features")

    first = Notifier(workers[0], clock=lambda: NOON).send(alert)
    second = Notifier(workers[1], clock=lambda: NOON).send(alert)

    assert (first.status, second.status) == ("sent", "suppressed")
    assert len(slack.posts()) == 1
    state = json.loads(storage.read_bytes(state_uri, settings))
    assert state["threads"]["flights-delay:drift"]["suppressed"] == 1
    assert not any((tmp_path / name).exists() for name in ("worker-a", "worker-b")), "state written to a worker's disk"


def test_concurrent_writers_in_the_object_store_lose_no_update(bucket, settings):
    uri = f"s3://{bucket}/state/{uuid.uuid4().hex}/counter.json"

    def increment(_: int) -> None:
        with shared_state.locked_json(uri, lambda: {"n": 0}, lambda s: "n" in s, settings=settings) as state:
            seen = state["n"]
            time.sleep(0.01)  # widen the read-modify-write window a lost update would need
            state["n"] = seen + 1

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(increment, range(12)))

    assert json.loads(storage.read_bytes(uri, settings)) == {"n": 12}
    with pytest.raises(Exception):
        storage.stat(f"{uri}.lease", settings)  # released


def test_a_live_lease_makes_a_writer_wait_then_fail_and_an_expired_one_is_taken_over(bucket, settings):
    uri = f"s3://{bucket}/state/{uuid.uuid4().hex}/doc.json"
    live = json.dumps({"holder": "other", "expires": time.time() + 600}).encode()
    assert storage.write_bytes_if(f"{uri}.lease", live, absent=True, settings=settings)
    with pytest.raises(TransientIOError, match="still locked"):
        with shared_state.locked_json(uri, dict, lambda s: True, settings=settings, wait_seconds=1):
            pass

    expired = json.dumps({"holder": "crashed", "expires": time.time() - 1}).encode()
    storage.write_bytes(f"{uri}.lease", expired, settings)
    with shared_state.locked_json(uri, dict, lambda s: True, settings=settings, wait_seconds=5) as state:
        state["written"] = True
    assert json.loads(storage.read_bytes(uri, settings)) == {"written": True}
