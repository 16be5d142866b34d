"""Prefect glue for results that are read back as data, never as code (format: leanops.safe_codec).

Prefect reads a cache hit in two parts: the record's metadata, which names the serializer that decodes
the payload, then the payload. Both live in result storage that every worker writes (production: the
shared bucket), so a result serializer alone is not enough: a planted record naming ``pickle`` would be
unpickled whatever serializer the task asks for. Hence two pieces:

- :class:`SafeResultSerializer` writes and reads :mod:`leanops.safe_codec` documents;
- :class:`VerifiedRecordStorage` is the cache policy's key storage: it hands Prefect a record's metadata
  only if it names :class:`SafeResultSerializer` (exactly, no options) and points at this key's payload,
  and that payload verifies (format, blob digests, model types). Nothing is decoded before that.

A refused record is a cache miss, logged as a warning naming the record and why: the task runs again
and its fresh result overwrites the record. Failing the run instead would let one planted file stop
every retrain until someone deleted it, while the recomputed result comes from the source data the
record only memoised. Either way nothing of the planted bytes is decoded.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from prefect.filesystems import WritableFileSystem
from prefect.serializers import Serializer
from pydantic import Field

from leanops import safe_codec
from leanops.safe_codec import RefusedResult

RECORDS_FOLDER = "cache-records"
"""Where, under the result storage, the metadata of cache records lives (payloads stay at its top)."""

_log = logging.getLogger(__name__)


class SafeResultSerializer(Serializer):
    """Results as leanops.safe_codec documents: JSON, Parquet, ``.npy`` and skops, each part hashed."""

    type: str = Field(default="leanops-result", frozen=True)

    def dumps(self, obj: Any) -> bytes:
        return safe_codec.encode(obj)

    def loads(self, blob: bytes) -> Any:
        return safe_codec.decode(blob)


SAFE_SERIALIZER = SafeResultSerializer()
_SERIALIZER_METADATA = {"type": SAFE_SERIALIZER.type}


def _default_storage() -> WritableFileSystem:
    """The result storage this process is configured with (PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK, or
    the folder PREFECT_LOCAL_STORAGE_PATH); Prefect caches it per configuration."""
    from prefect.results import get_default_result_storage

    return get_default_result_storage(_sync=True)


def _read(storage: WritableFileSystem, path: str) -> bytes:
    from prefect._internal.compatibility.blocks import call_explicitly_sync_block_method

    return call_explicitly_sync_block_method(storage, "read_path", (path,), {})


def _warn(message: str) -> None:
    from prefect.exceptions import MissingContextError
    from prefect.logging import get_run_logger

    try:
        get_run_logger().warning(message)
    except MissingContextError:
        _log.warning(message)


class VerifiedRecordStorage(WritableFileSystem):
    """Cache-record metadata in ``cache-records/`` of the configured result storage, read back only when
    the record is ours to decode (see the module doc)."""

    _block_type_name = "LeanOps Verified Cache Records"

    def read_path(self, path: str, _sync: bool = True) -> bytes:
        storage = _default_storage()
        metadata = _read(storage, f"{RECORDS_FOLDER}/{path}")
        try:
            payload_key = self._check_metadata(path, metadata, storage)
            safe_codec.verify(_read(storage, payload_key))
        except RefusedResult as refused:
            _warn(f"cache record {path} refused, treated as a miss (the task runs again): {refused}")
            raise
        return metadata

    async def aread_path(self, path: str) -> bytes:
        return self.read_path(path)

    def write_path(self, path: str, content: bytes, _sync: bool = True) -> str:
        from prefect._internal.compatibility.blocks import call_explicitly_sync_block_method

        return call_explicitly_sync_block_method(_default_storage(), "write_path", (f"{RECORDS_FOLDER}/{path}",), {"content": content})

    async def awrite_path(self, path: str, content: bytes) -> str:
        return self.write_path(path, content)

    @staticmethod
    def _check_metadata(key: str, content: bytes, storage: WritableFileSystem) -> str:
        """The payload's key if this metadata names our serializer and this record's own payload."""
        if content[:1] == b"\x80":
            raise RefusedResult("refused cache record metadata: it is a pickle")
        try:
            metadata = json.loads(content)
        except (ValueError, UnicodeDecodeError):
            raise RefusedResult("refused cache record metadata: not JSON") from None
        if not isinstance(metadata, dict):
            raise RefusedResult("refused cache record metadata: not a JSON object")
        serializer = metadata.get("serializer")
        if serializer != _SERIALIZER_METADATA:
            raise RefusedResult(f"refused cache record metadata: serializer {serializer!r} is not {_SERIALIZER_METADATA!r}")
        payload_key = metadata.get("storage_key")
        resolve = getattr(storage, "_resolve_path", None)
        own_keys = {key, str(resolve(key))} if resolve is not None and getattr(storage, "_block_document_id", None) is None else {key}
        if payload_key not in own_keys:
            raise RefusedResult(f"refused cache record metadata: its payload {payload_key!r} is not this record's ({key!r})")
        return str(payload_key)
