"""The manifest of processed batches and what the reconciliation would announce (local folders, no server)."""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta, timezone

import pytest

from leanops import manifest, storage
from leanops.settings import Settings


@pytest.fixture
def local(tmp_path):
    """A settings object keeping the manifest in a local folder, and a folder of landed batches."""
    settings = Settings(monitoring_root=str(tmp_path / "monitoring"), home=tmp_path / "home")
    landed = tmp_path / "incoming" / "flights-delay"
    landed.mkdir(parents=True)
    return settings, landed


def land(folder, name: str, data: bytes, age_minutes: float = 60.0) -> str:
    path = folder / name
    path.write_bytes(data)
    then = time.time() - age_minutes * 60
    os.utime(path, (then, then))
    return str(path)


def test_a_processed_batch_is_no_longer_waiting(local):
    settings, landed = local
    first = land(landed, "2013-07.parquet", b"PAR1 july")
    second = land(landed, "2013-08.parquet", b"PAR1 august")

    mark = manifest.mark_processed(first, "flights-delay", "no_champion", "run-1", settings)

    assert mark.status == "no_champion" and mark.flow_run_id == "run-1"
    waiting = manifest.find_unprocessed(str(landed) + "/", ".parquet", timedelta(minutes=5), settings=settings)
    assert [o.uri for o in waiting] == [second]
    assert manifest.read_mark(first, mark.identity, settings) == mark


def test_new_content_under_a_processed_key_waits_again(local):
    settings, landed = local
    uri = land(landed, "2013-07.parquet", b"PAR1 july")
    manifest.mark_processed(uri, "flights-delay", "ok", settings=settings)

    land(landed, "2013-07.parquet", b"PAR1 july, corrected")

    waiting = manifest.find_unprocessed(str(landed) + "/", ".parquet", timedelta(minutes=5), settings=settings)
    assert [o.uri for o in waiting] == [uri]


def test_young_objects_wait_for_their_own_notification(local):
    settings, landed = local
    land(landed, "old.parquet", b"PAR1 old", age_minutes=30)
    land(landed, "fresh.parquet", b"PAR1 fresh", age_minutes=1)

    waiting = manifest.find_unprocessed(str(landed) + "/", ".parquet", timedelta(minutes=10), settings=settings)

    assert [os.path.basename(o.uri) for o in waiting] == ["old.parquet"]


def test_a_window_prefix_is_not_marked(local):
    settings, landed = local
    assert manifest.mark_processed(str(landed) + "/", "flights-delay", "ok", settings=settings) is None
    assert manifest.processed_markers(settings) == frozenset()


def test_unprocessed_orders_oldest_first_and_ignores_version_pins():
    now = datetime(2024, 5, 1, 12, tzinfo=timezone.utc)
    objects = [
        storage.ObjectInfo("s3://b/incoming/m/b.parquet", 10, now - timedelta(hours=1), "fp-b", "etag-b"),
        storage.ObjectInfo("s3://b/incoming/m/a.parquet", 10, now - timedelta(hours=2), "fp-a", "etag-a"),
        storage.ObjectInfo("s3://b/incoming/m/c.parquet", 10, now - timedelta(hours=3), "fp-c", "etag-c"),
    ]
    # A check of a version-pinned URI marks the object a listing shows (no pin, same ETag).
    markers = frozenset({manifest.marker_name("s3://b/incoming/m/c.parquet?versionId=v7", "etag-c")})

    waiting = manifest.unprocessed(objects, markers, timedelta(minutes=15), now)

    assert [o.uri.rsplit("/", 1)[1] for o in waiting] == ["a.parquet", "b.parquet"]


def test_checks_still_in_flight_are_not_announced_twice():
    now = datetime(2024, 5, 1, 12, tzinfo=timezone.utc)
    objects = [
        storage.ObjectInfo("s3://b/incoming/m/queued.parquet", 10, now - timedelta(hours=2), "fp-q", "etag-q"),
        storage.ObjectInfo("s3://b/incoming/m/lost.parquet", 10, now - timedelta(hours=2), "fp-l", "etag-l"),
    ]
    # A run the bridge's event created, still waiting for a worker, names the object by bucket and key.
    in_flight = [manifest.checked_uri({"bucket": "b", "key": "incoming/m/queued.parquet", "version_id": ""})]

    waiting = manifest.unprocessed(objects, frozenset(), timedelta(minutes=15), now, in_flight=in_flight)

    assert [o.uri for o in waiting] == ["s3://b/incoming/m/lost.parquet"]


def test_checked_uri_reads_either_parameter_shape():
    assert manifest.checked_uri({"batch_uri": "s3://b/k.parquet?versionId=3"}) == "s3://b/k.parquet"
    assert manifest.checked_uri({"bucket": "b", "key": "k 1.parquet", "batch_uri": ""}) == "s3://b/k 1.parquet"
    assert manifest.checked_uri({"spec": "m"}) == ""


def test_a_batch_landed_before_its_spec_waits_for_it_and_is_announced_once_it_exists(local):
    settings, landed = local
    early = land(landed, "2013-07.parquet", b"PAR1 july")
    specs: set[str] = set()

    assert manifest.mark_waiting_for_spec(early, "flights-delay", "no model spec at specs/flights-delay.yaml", "run-1", settings)

    waiting = manifest.find_unprocessed(str(landed) + "/", ".parquet", timedelta(minutes=5), settings=settings, spec_ready=specs.__contains__)
    assert waiting == []  # still no spec: not announced (its check would only fail again)
    specs.add("flights-delay")
    waiting = manifest.find_unprocessed(str(landed) + "/", ".parquet", timedelta(minutes=5), settings=settings, spec_ready=specs.__contains__)
    assert [o.uri for o in waiting] == [early]
    assert manifest.processed_markers(settings) == frozenset()  # never counted as processed


def test_the_reconcile_listing_reports_its_phases_to_the_count_of_waiting_batches(local):
    settings, landed = local
    first = land(landed, "2013-07.parquet", b"PAR1 july")
    land(landed, "2013-08.parquet", b"PAR1 august")
    manifest.mark_processed(first, "flights-delay", "no_champion", "run-1", settings)
    heard = []

    waiting = manifest.find_unprocessed(str(landed) + "/", ".parquet", timedelta(minutes=5), settings=settings,
                                        on_progress=lambda share, done: heard.append((share, done)))

    assert len(waiting) == 1
    assert [share for share, _ in heard] == [0.5, 0.9, 1.0]
    assert heard[-1][1] == "2 landed objects, 1 processed markers: 1 not processed"
