"""Credentials for the object store: the local stack's endpoint works from a fresh shell with no AWS
setup, and a missing credential elsewhere is a setup error named once, not an outage retried."""

from __future__ import annotations

import socket

import pytest

from leanops import storage
from leanops.errors import NEVER_RETRY, StorageCredentialsMissing
from leanops.settings import Settings


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def moto_port():
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield port
    server.stop()


@pytest.fixture
def fresh_shell(monkeypatch, tmp_path):
    """No AWS credentials anywhere boto3 looks (environment, shared files, instance metadata), and a
    boto3 default session that has not resolved (and cached) any yet, as in a new process."""
    import boto3

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    storage._client.cache_clear()
    yield
    storage._client.cache_clear()


def test_the_local_endpoint_works_without_any_aws_credentials(fresh_shell, moto_port):
    settings = Settings(s3_port=moto_port)
    storage.ensure_bucket("fresh-shell", settings)

    storage.write_bytes("s3://fresh-shell/incoming/m/a.csv", b"x,y\n1,2\n", settings)

    assert storage.read_bytes("s3://fresh-shell/incoming/m/a.csv", settings) == b"x,y\n1,2\n"


def test_another_endpoint_without_credentials_is_a_setup_error_that_is_never_retried(fresh_shell, moto_port):
    """An endpoint that is not the local stack's (real S3, MinIO) gets no placeholder credentials."""
    settings = Settings(s3_endpoint_url=f"http://127.0.0.1:{moto_port}", s3_use_local_endpoint=False)

    with pytest.raises(StorageCredentialsMissing, match="no AWS credentials .* set AWS_ACCESS_KEY_ID") as raised:
        storage.read_bytes("s3://leanops/incoming/m/a.parquet", settings)

    assert isinstance(raised.value, NEVER_RETRY)
