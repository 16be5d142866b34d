"""Object storage: local writes are atomic per writer, and ensure_bucket never swallows an outage."""

from __future__ import annotations

import socket
import threading
import uuid

import pytest

from leanops import storage
from leanops.errors import TransientIOError
from leanops.settings import Settings


def test_writers_of_one_file_each_replace_it_whole(tmp_path):
    target = tmp_path / "monitoring" / "drift-history.json"
    payloads = [bytes([65 + i]) * 400_000 for i in range(6)]  # six writers, each its own 400 kB content
    errors: list[BaseException] = []
    start = threading.Barrier(len(payloads))

    def writer(payload: bytes) -> None:
        start.wait()
        try:
            for _ in range(25):
                storage.write_bytes(str(target), payload)
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(p,)) for p in payloads]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert target.read_bytes() in payloads  # one writer's content, whole
    assert [p.name for p in target.parent.iterdir()] == [target.name]  # no temporary file left behind


def test_ensure_bucket_reports_an_unreachable_endpoint(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = Settings(s3_endpoint_url=dead, home=tmp_path / "home")

    with pytest.raises(TransientIOError, match="s3://leanops.*cannot reach the object store"):
        storage.ensure_bucket("leanops", settings)


@pytest.mark.e2e
def test_ensure_bucket_creates_once_and_accepts_its_own_bucket(s3_endpoint, settings):
    bucket = f"ensure-{uuid.uuid4().hex[:8]}"

    storage.ensure_bucket(bucket, settings)
    storage.ensure_bucket(bucket, settings)

    storage.write_bytes(f"s3://{bucket}/probe.txt", b"here", settings)
    assert storage.read_bytes(f"s3://{bucket}/probe.txt", settings) == b"here"
