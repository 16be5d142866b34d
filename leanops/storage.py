"""Object storage by URI: local paths, ``file://`` and ``s3://``. The only boto3 user.

The S3 endpoint is a setting, so the same calls reach AWS, MinIO or the local moto server.
SQS (the queue that receives the bucket's notifications) is AWS too, so it lives here.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd

from leanops.errors import BatchReadError, ObjectNotFound, StorageCredentialsMissing, TransientIOError
from leanops.memory import check_batch_fits
from leanops.settings import LOCAL_AWS_CREDENTIALS, Settings, get_settings

_PARQUET_MAGIC = b"PAR1"


@dataclass(frozen=True)
class ObjectInfo:
    uri: str
    size: int
    last_modified: datetime | None
    fingerprint: str
    # S3's ETag (quotes stripped); "" for local files. A listing and a HEAD agree on it, versioned or not.
    etag: str = ""
    identity: str = ""
    """What changes whenever the content changes, known without reading it (see :func:`s3_identity`,
    :func:`file_identity`). A listing, a HEAD and a GET of the same object agree on it."""


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


_VERSION_MARK = "?versionId="


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key). Not urlparse: a key may contain '#' or '?'."""
    bucket, _, key = uri[len("s3://"):].partition("/")
    return bucket, key.split(_VERSION_MARK, 1)[0]


def _object_args(uri: str) -> dict[str, str]:
    """boto3 arguments naming one object; ``s3://b/k?versionId=v`` pins a version of a versioned bucket."""
    bucket, key = split_s3_uri(uri)
    args = {"Bucket": bucket, "Key": key}
    if _VERSION_MARK in uri:
        args["VersionId"] = uri.rsplit(_VERSION_MARK, 1)[1]
    return args


def local_path(uri: str) -> Path:
    return Path(uri[len("file://"):]) if uri.startswith("file://") else Path(uri)


def _boto_config(timeout: float | None = None):
    from botocore.config import Config

    if timeout is not None:  # a probe (leanops doctor): one attempt, an answer within ``timeout`` or an error
        return Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=timeout, read_timeout=timeout)
    # botocore's own retries stay small: our task-level retries own the backoff policy.
    return Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=60)


@lru_cache(maxsize=16)
def _client(service: str, endpoint_url: str | None, region: str, credentials: tuple[tuple[str, str], ...] = (), timeout: float | None = None):
    import boto3

    # Clients are thread-safe and cost ~50 ms to build: one per (service, endpoint, region, credentials, timeout).
    return boto3.client(service, endpoint_url=endpoint_url, region_name=region, config=_boto_config(timeout), **dict(credentials))


def _credentials(settings: Settings) -> tuple[tuple[str, str], ...]:
    """Explicit credentials for the local stack's endpoint; () lets boto3 find real ones (env, profile, role).

    The local endpoint accepts any credentials, so a fresh shell (or a machine with an expired AWS
    profile) works with the stack's own placeholders; credentials set in the environment still win."""
    if not settings.uses_local_s3 or os.environ.get("AWS_ACCESS_KEY_ID"):
        return ()
    return tuple((name.lower(), value) for name, value in LOCAL_AWS_CREDENTIALS.items())


def s3_client(settings: Settings | None = None, timeout: float | None = None):
    """The S3 client; with ``timeout``, one that tries once and gives up after that many seconds (probes)."""
    settings = settings or get_settings()
    return _client("s3", settings.resolved_s3_endpoint_url, settings.aws_region, _credentials(settings), timeout)


def sqs_client(settings: Settings | None = None, timeout: float | None = None):
    settings = settings or get_settings()
    return _client("sqs", settings.resolved_s3_endpoint_url, settings.aws_region, _credentials(settings), timeout)


def _translate_boto_error(uri: str, exc: Exception) -> Exception:
    from botocore.exceptions import (
        ClientError, ConnectionError as BotoConnectionError, EndpointConnectionError, HTTPClientError, NoCredentialsError,
        PartialCredentialsError,
    )

    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return StorageCredentialsMissing(
            f"{uri}: no AWS credentials ({exc}); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE or an "
            "instance role, or use the local stack's endpoint (LEANOPS_S3_USE_LOCAL_ENDPOINT=true)"
        )
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code in {"NoSuchKey", "404", "NoSuchBucket", "NotFound"}:
            return ObjectNotFound(f"{uri}: no such object ({code})")
        if code in {"AccessDenied", "403"}:
            return BatchReadError(f"{uri}: access denied")
        if status >= 500 or code in {"SlowDown", "Throttling", "RequestTimeout"}:
            return TransientIOError(f"{uri}: S3 answered {code or status}")
        return BatchReadError(f"{uri}: S3 error {code}: {exc}")
    # HTTPClientError: the connection was reset or timed out mid-request (ConnectionClosedError, ReadTimeoutError).
    if isinstance(exc, (EndpointConnectionError, BotoConnectionError, HTTPClientError, ConnectionError, TimeoutError)):
        return TransientIOError(f"{uri}: cannot reach the object store: {exc}")
    return exc


def _hash_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def s3_identity(etag: str, size: int) -> str:
    """An S3 object's identity without reading it: its ETag, which AWS documents as reflecting changes to
    the content only. It is the MD5 of the bytes for a single-part upload without SSE-KMS/SSE-C, but the
    MD5 of the parts' MD5s (suffix ``-N``) for a multipart upload, and opaque under KMS, so it is a change
    detector, not a content fingerprint: the same bytes uploaded in other parts get another ETag (a
    needless recompute, never a wrong reuse). Not the version id: a listing does not show it (a pinned
    ``?versionId=`` is part of the URI instead)."""
    return f"etag:{etag}:{size}"


def file_identity(st: os.stat_result) -> str:
    """A local file's identity without reading it: size, mtime_ns, ctime_ns and inode. mtime alone can be
    set back (``cp -p``, ``touch -r``, ``rsync -t``); ctime cannot, and a replace-by-rename gets a new
    inode. Any metadata change (chmod) also changes ctime: a needless recompute, never a wrong reuse. Left
    open: a same-size rewrite in place within one tick of the filesystem clock."""
    return f"stat:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}"


def object_identity(uri: str, settings: Settings | None = None) -> str:
    """One object's identity (:func:`s3_identity` by a HEAD, :func:`file_identity` by a stat), without reading it."""
    if is_s3(uri):
        return stat(uri, settings).identity
    path = local_path(uri)
    try:
        return file_identity(path.stat())
    except FileNotFoundError as exc:
        raise ObjectNotFound(f"{uri}: no such file") from exc


def stat(uri: str, settings: Settings | None = None) -> ObjectInfo:
    """Size, time and fingerprint of an object without reading it (S3: ETag and version id)."""
    if is_s3(uri):
        try:
            head = s3_client(settings).head_object(**_object_args(uri))
        except Exception as exc:  # noqa: BLE001 - translated to our error types
            raise _translate_boto_error(uri, exc) from exc
        etag = head.get("ETag", "").strip('"')
        version = head.get("VersionId") or ""
        return ObjectInfo(
            uri, head["ContentLength"], head.get("LastModified"), _hash_bytes(f"{etag}:{version}".encode()), etag,
            s3_identity(etag, head["ContentLength"]),
        )
    path = local_path(uri)
    if not path.exists():
        raise ObjectNotFound(f"{uri}: no such file")
    st = path.stat()
    return ObjectInfo(uri, st.st_size, datetime.fromtimestamp(st.st_mtime), _hash_file(path), identity=file_identity(st))


def read_bytes_with_identity(uri: str, settings: Settings | None = None) -> tuple[bytes, str]:
    """An object's content and the :func:`object_identity` of the very bytes read (the GET's own ETag; the
    open file's fstat), so what is recorded about a read names what was read, whatever changed meanwhile."""
    if is_s3(uri):
        try:
            answer = s3_client(settings).get_object(**_object_args(uri))
            data = answer["Body"].read()
        except Exception as exc:  # noqa: BLE001
            raise _translate_boto_error(uri, exc) from exc
        return data, s3_identity(answer.get("ETag", "").strip('"'), len(data))
    path = local_path(uri)
    try:
        with path.open("rb") as handle:
            return handle.read(), file_identity(os.fstat(handle.fileno()))
    except FileNotFoundError as exc:
        raise ObjectNotFound(f"{uri}: no such file") from exc


def read_bytes(uri: str, settings: Settings | None = None) -> bytes:
    if is_s3(uri):
        try:
            return s3_client(settings).get_object(**_object_args(uri))["Body"].read()
        except Exception as exc:  # noqa: BLE001
            raise _translate_boto_error(uri, exc) from exc
    path = local_path(uri)
    if not path.exists():
        raise ObjectNotFound(f"{uri}: no such file")
    return path.read_bytes()


def write_bytes(uri: str, data: bytes, settings: Settings | None = None) -> str:
    if is_s3(uri):
        bucket, key = split_s3_uri(uri)
        try:
            s3_client(settings).put_object(Bucket=bucket, Key=key, Body=data)
        except Exception as exc:  # noqa: BLE001
            raise _translate_boto_error(uri, exc) from exc
        return uri
    path = local_path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A temporary name of this write's own, in the same folder (a rename across filesystems is no
    # rename): two writers of one file each replace it whole, and a reader never sees half a file.
    handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False)
    try:
        with handle:
            handle.write(data)
        Path(handle.name).replace(path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
    return uri


def _precondition_failed(exc: Exception) -> bool:
    from botocore.exceptions import ClientError

    # 412: the condition did not hold; 409: a concurrent conditional write to the same key won.
    return isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") in {
        "PreconditionFailed", "ConditionalRequestConflict", "412", "409",
    }


def write_bytes_if(uri: str, data: bytes, *, absent: bool = False, etag: str | None = None, settings: Settings | None = None) -> bool:
    """An S3 conditional write: only if no object is there (``absent``) or only over the version with
    ``etag``. True if written, False if the condition did not hold (another writer came first)."""
    if not is_s3(uri):
        raise ValueError(f"{uri}: conditional writes are for s3:// objects")
    if absent == (etag is not None):
        raise ValueError("give exactly one condition: absent=True or etag=...")
    bucket, key = split_s3_uri(uri)
    condition = {"IfNoneMatch": "*"} if absent else {"IfMatch": f'"{etag}"'}
    try:
        s3_client(settings).put_object(Bucket=bucket, Key=key, Body=data, **condition)
    except Exception as exc:  # noqa: BLE001 - a failed condition is an answer; anything else is translated
        if _precondition_failed(exc):
            return False
        raise _translate_boto_error(uri, exc) from exc
    return True


def read_bytes_with_etag(uri: str, settings: Settings | None = None) -> tuple[bytes, str]:
    """An S3 object's content and the ETag of that very version (for a later conditional write)."""
    try:
        answer = s3_client(settings).get_object(**_object_args(uri))
        return answer["Body"].read(), answer.get("ETag", "").strip('"')
    except Exception as exc:  # noqa: BLE001
        raise _translate_boto_error(uri, exc) from exc


def parse_table(uri: str, data: bytes) -> pd.DataFrame:
    """Bytes to a DataFrame by format (parquet or CSV), with a specific error for bad input."""
    if not data:
        raise BatchReadError(f"{uri}: the file is empty")
    lowered = uri.split(_VERSION_MARK, 1)[0].lower()
    try:
        if lowered.endswith(".parquet") or lowered.endswith(".pq"):
            if not data.startswith(_PARQUET_MAGIC):
                raise BatchReadError(f"{uri}: not a parquet file (missing PAR1 magic bytes)")
            return pd.read_parquet(io.BytesIO(data))
        if lowered.endswith(".csv") or lowered.endswith(".csv.gz"):
            compression = "gzip" if lowered.endswith(".gz") else None
            return pd.read_csv(io.BytesIO(data), compression=compression)
    except BatchReadError:
        raise
    except Exception as exc:  # noqa: BLE001 - pyarrow / the csv parser raise many types
        raise BatchReadError(f"{uri}: cannot be read as a table: {type(exc).__name__}: {exc}") from exc
    raise BatchReadError(f"{uri}: unknown table format (use .parquet or .csv)")


def _size(uri: str, settings: Settings | None) -> int:
    if is_s3(uri):
        return stat(uri, settings).size
    path = local_path(uri)
    if not path.exists():
        raise ObjectNotFound(f"{uri}: no such file")
    return path.stat().st_size


def read_table(uri: str, settings: Settings | None = None) -> tuple[pd.DataFrame, str]:
    """Read a parquet or CSV table; returns it with the content fingerprint of its bytes. A file larger than
    this process may hold is refused (BatchTooLarge) from its size alone, before it is read."""
    frame, fingerprint, _ = read_table_with_identity(uri, settings)
    return frame, fingerprint


def read_table_with_identity(uri: str, settings: Settings | None = None) -> tuple[pd.DataFrame, str, str]:
    """:func:`read_table`, with the :func:`object_identity` of the bytes read as well."""
    check_batch_fits(uri, _size(uri, settings), settings)
    data, identity = read_bytes_with_identity(uri, settings)
    return parse_table(uri, data), _hash_bytes(data), identity


def upload_file(path: str | Path, uri: str, settings: Settings | None = None) -> str:
    """Copy a local file to ``uri`` without holding it in memory (S3: a streamed multipart upload)."""
    if not is_s3(uri):
        return write_bytes(uri, Path(path).read_bytes(), settings)
    bucket, key = split_s3_uri(uri)
    try:
        s3_client(settings).upload_file(str(path), bucket, key)
    except Exception as exc:  # noqa: BLE001 - translated to our error types
        raise _translate_boto_error(uri, exc) from exc
    return uri


def write_table(frame: pd.DataFrame, uri: str, settings: Settings | None = None) -> str:
    buffer = io.BytesIO()
    if uri.lower().endswith(".csv"):
        buffer.write(frame.to_csv(index=False).encode())
    else:
        frame.to_parquet(buffer, index=False)
    return write_bytes(uri, buffer.getvalue(), settings)


def download_file(uri: str, path: Path, etag: str = "", settings: Settings | None = None) -> None:
    """Stream an object to a local file in 1 MiB pieces (memory stays flat whatever its size). With
    ``etag`` (from :func:`stat`), an object replaced since is refused instead of read half old, half new."""
    if not is_s3(uri):
        raise ValueError(f"{uri}: a local file needs no download")
    args = {**_object_args(uri), **({"IfMatch": etag} if etag else {})}
    try:
        body = s3_client(settings).get_object(**args)["Body"]
        with path.open("wb") as handle:
            for piece in body.iter_chunks(1 << 20):
                handle.write(piece)
    except Exception as exc:  # noqa: BLE001 - translated to our error types
        raise _translate_boto_error(uri, exc) from exc


def upload_file(path: Path, uri: str, settings: Settings | None = None) -> str:
    """Put a local file at ``uri`` (S3: a multipart upload for large files; local: replaced whole)."""
    if is_s3(uri):
        bucket, key = split_s3_uri(uri)
        try:
            s3_client(settings).upload_file(str(path), bucket, key)
        except Exception as exc:  # noqa: BLE001
            raise _translate_boto_error(uri, exc) from exc
        return uri
    target = local_path(uri)
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = target.parent / f".{target.name}.{os.getpid()}.tmp"
    try:
        shutil.copyfile(path, staged)
        staged.replace(target)
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    return uri


def list_objects(
    prefix_uri: str, suffix: str = "", settings: Settings | None = None, on_page: Callable[[int], None] | None = None,
) -> list[ObjectInfo]:
    """Objects under a prefix (S3) or files under a folder, sorted by key. ``on_page`` hears how many keys
    have been listed after each page of S3's listing (1,000 keys), so a long listing can show it moves."""
    if is_s3(prefix_uri):
        bucket, prefix = split_s3_uri(prefix_uri)
        client = s3_client(settings)
        found: list[ObjectInfo] = []
        listed = 0
        try:
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                listed += page.get("KeyCount", len(page.get("Contents", [])))
                if on_page is not None:
                    on_page(listed)
                for item in page.get("Contents", []):
                    if item["Key"].endswith(suffix):
                        etag = item.get("ETag", "").strip('"')
                        fp = _hash_bytes(f"{etag}:".encode())
                        found.append(ObjectInfo(
                            f"s3://{bucket}/{item['Key']}", item["Size"], item.get("LastModified"), fp, etag,
                            s3_identity(etag, item["Size"]),
                        ))
        except Exception as exc:  # noqa: BLE001
            raise _translate_boto_error(prefix_uri, exc) from exc
        return sorted(found, key=lambda o: o.uri)
    root = local_path(prefix_uri)
    if not root.exists():
        return []
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name.endswith(suffix))
    return [stat(str(p), settings) for p in files]


def delete_objects(uris: list[str], settings: Settings | None = None) -> None:
    """Delete objects (S3: in requests of up to 1,000 keys per bucket); an object already gone is no error."""
    local = [u for u in uris if not is_s3(u)]
    for uri in local:
        local_path(uri).unlink(missing_ok=True)
    by_bucket: dict[str, list[str]] = {}
    for uri in uris:
        if is_s3(uri):
            bucket, key = split_s3_uri(uri)
            by_bucket.setdefault(bucket, []).append(key)
    for bucket, keys in by_bucket.items():
        for start in range(0, len(keys), 1000):
            chunk = keys[start:start + 1000]
            try:
                answer = s3_client(settings).delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True})
            except Exception as exc:  # noqa: BLE001 - translated to our error types
                raise _translate_boto_error(f"s3://{bucket}/{chunk[0]}", exc) from exc
            if answer.get("Errors"):
                first = answer["Errors"][0]
                raise TransientIOError(
                    f"s3://{bucket}: {len(answer['Errors'])} of {len(chunk)} deletions failed, e.g. {first.get('Key')}: "
                    f"{first.get('Code')} {first.get('Message')}"
                )


def ensure_bucket(bucket: str, settings: Settings | None = None) -> None:
    """Create the bucket unless it exists. Only "absent" leads to a create and only "already yours"
    counts as done: an unreachable endpoint or a refusal is an error naming the bucket."""
    from botocore.exceptions import ClientError

    client = s3_client(settings)
    uri = f"s3://{bucket}"
    try:
        client.head_bucket(Bucket=bucket)
        return
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code", "") not in {"404", "NoSuchBucket", "NotFound"}:
            raise _translate_boto_error(uri, exc) from exc
    except Exception as exc:  # noqa: BLE001 - translated to our error types
        raise _translate_boto_error(uri, exc) from exc
    try:
        client.create_bucket(Bucket=bucket)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        # A concurrent creator got there first: fine if the bucket is ours (S3 says "owned by you";
        # some endpoints say "exists", so the bucket must then answer us), an error otherwise.
        if code == "BucketAlreadyOwnedByYou":
            return
        if code == "BucketAlreadyExists" and _answers(client, bucket):
            return
        raise _translate_boto_error(uri, exc) from exc
    except Exception as exc:  # noqa: BLE001 - translated to our error types
        raise _translate_boto_error(uri, exc) from exc


def _answers(client, bucket: str) -> bool:
    try:
        client.head_bucket(Bucket=bucket)
    except Exception:  # noqa: BLE001 - the question is only whether the bucket answers us
        return False
    return True


# --- SQS: the queue behind S3 notifications -----------------------------------------------------


def ensure_queue(name: str, settings: Settings | None = None, attributes: dict[str, str] | None = None) -> tuple[str, str]:
    """Create (or find) a queue and apply ``attributes`` to it; returns (url, arn)."""
    client = sqs_client(settings)
    # Attributes are set apart from creation: CreateQueue refuses an existing queue whose attributes differ.
    url = client.create_queue(QueueName=name)["QueueUrl"]
    if attributes:
        client.set_queue_attributes(QueueUrl=url, Attributes=attributes)
    arn = client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def configure_bucket_notifications(
    bucket: str, queue_arn: str, prefix: str, suffix: str, settings: Settings | None = None,
    also: Sequence[tuple[str, str]] = (),
) -> None:
    """New objects under ``prefix`` ending in ``suffix`` (and under each (prefix, suffix) of ``also``) notify the queue."""
    configurations = []
    for key_prefix, key_suffix in [(prefix, suffix), *also]:
        filters = [{"Name": "prefix", "Value": key_prefix}]
        if key_suffix:
            filters.append({"Name": "suffix", "Value": key_suffix})
        configurations.append({"QueueArn": queue_arn, "Events": ["s3:ObjectCreated:*"], "Filter": {"Key": {"FilterRules": filters}}})
    s3_client(settings).put_bucket_notification_configuration(
        Bucket=bucket, NotificationConfiguration={"QueueConfigurations": configurations},
    )


@dataclass(frozen=True)
class QueueMessage:
    message_id: str
    receipt_handle: str
    body: str
    # String message attributes (the bridge puts its reason for dead-lettering one there).
    attributes: dict[str, str] = field(default_factory=dict)


def queue_url(name: str, settings: Settings | None = None) -> str:
    """URL of an existing queue (unlike :func:`ensure_queue`, never creates one with default attributes)."""
    return sqs_client(settings).get_queue_url(QueueName=name)["QueueUrl"]


def queue_counts(queue_url: str, settings: Settings | None = None) -> tuple[int, int]:
    """(visible, in flight) message counts; SQS calls them approximate."""
    attributes = sqs_client(settings).get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]), int(attributes["ApproximateNumberOfMessagesNotVisible"])


# --- what is configured (leanops doctor): one attempt each, an answer or one of our errors -------------


@dataclass(frozen=True)
class QueueSetup:
    url: str
    arn: str
    redrive_target_arn: str | None
    """Where SQS moves a message after max_receive_count failed receives (its dead-letter queue), if anywhere."""
    max_receive_count: int | None
    visible_messages: int


@dataclass(frozen=True)
class NotificationRule:
    """One of a bucket's notification configurations that sends to an SQS queue."""

    queue_arn: str
    events: tuple[str, ...]
    prefix: str
    suffix: str


def _probe(label: str, call):
    from botocore.exceptions import ClientError

    try:
        return call()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code", "") in {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}:
            raise ObjectNotFound(f"{label}: no such queue") from exc
        raise _translate_boto_error(label, exc) from exc
    except Exception as exc:  # noqa: BLE001 - translated to our error types (unknown ones pass unchanged)
        raise _translate_boto_error(label, exc) from exc


def check_bucket(bucket: str, settings: Settings | None = None, timeout: float = 5.0) -> None:
    """Return if the bucket answers us; ObjectNotFound, BatchReadError (refused) or TransientIOError otherwise."""
    _probe(f"s3://{bucket}", lambda: s3_client(settings, timeout).head_bucket(Bucket=bucket))


def queue_setup(name: str, settings: Settings | None = None, timeout: float = 5.0) -> QueueSetup:
    client = sqs_client(settings, timeout)

    def read() -> QueueSetup:
        url = client.get_queue_url(QueueName=name)["QueueUrl"]
        attributes = client.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        redrive = json.loads(attributes.get("RedrivePolicy") or "{}")
        return QueueSetup(
            url, attributes["QueueArn"], redrive.get("deadLetterTargetArn"),
            int(redrive["maxReceiveCount"]) if "maxReceiveCount" in redrive else None,
            int(attributes.get("ApproximateNumberOfMessages", 0)),
        )

    return _probe(f"sqs queue {name}", read)


def bucket_notification_rules(bucket: str, settings: Settings | None = None, timeout: float = 5.0) -> list[NotificationRule]:
    """The bucket's notifications to SQS queues, with their key filters."""
    answer = _probe(f"s3://{bucket}", lambda: s3_client(settings, timeout).get_bucket_notification_configuration(Bucket=bucket))
    rules = []
    for configuration in answer.get("QueueConfigurations", []):
        filters = {f["Name"].lower(): f["Value"] for f in configuration.get("Filter", {}).get("Key", {}).get("FilterRules", [])}
        rules.append(NotificationRule(
            configuration["QueueArn"], tuple(configuration.get("Events", ())), filters.get("prefix", ""), filters.get("suffix", ""),
        ))
    return rules


def receive_messages(
    queue_url: str,
    max_messages: int = 10,
    wait_seconds: int = 10,
    settings: Settings | None = None,
    visibility_timeout: int = 30,
) -> list[QueueMessage]:
    response = sqs_client(settings).receive_message(
        QueueUrl=queue_url,
        MaxNumberOfMessages=max_messages,
        WaitTimeSeconds=wait_seconds,
        VisibilityTimeout=visibility_timeout,
        MessageAttributeNames=["All"],
    )
    return [
        QueueMessage(
            m["MessageId"], m["ReceiptHandle"], m["Body"],
            {k: v.get("StringValue", "") for k, v in (m.get("MessageAttributes") or {}).items()},
        )
        for m in response.get("Messages", [])
    ]


def release_message(queue_url: str, receipt_handle: str, settings: Settings | None = None) -> None:
    """Make a received message visible again at once (instead of after its visibility timeout)."""
    sqs_client(settings).change_message_visibility(QueueUrl=queue_url, ReceiptHandle=receipt_handle, VisibilityTimeout=0)


def delete_message(queue_url: str, receipt_handle: str, settings: Settings | None = None) -> None:
    sqs_client(settings).delete_message(QueueUrl=queue_url, ReceiptHandle=receipt_handle)


def send_message(
    queue_url: str, body: str | dict[str, Any], settings: Settings | None = None, attributes: dict[str, str] | None = None
) -> None:
    """Send a message; ``attributes`` become string message attributes (e.g. why it was dead-lettered)."""
    text = body if isinstance(body, str) else json.dumps(body)
    extra = {}
    if attributes:
        extra["MessageAttributes"] = {k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()}
    sqs_client(settings).send_message(QueueUrl=queue_url, MessageBody=text, **extra)
