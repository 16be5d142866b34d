"""Which landed batches a retrain learns from, and reading them as one batch.

A batch URI that ends with ``/`` is a prefix (S3) or folder (local): the spec's retrain window
(the last N objects, or those landed since a date) picks objects under it, oldest first.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pandas as pd

from leanops import storage
from leanops.errors import BatchReadError
from leanops.results import Batch, combine_fingerprints
from leanops.settings import Settings, get_settings
from leanops.spec import RetrainWindowSpec, Spec


def is_prefix(uri: str) -> bool:
    return uri.endswith("/")


def default_source(spec: Spec, settings: Settings | None = None) -> str:
    """Where a retrain reads when no batch is given: the spec's window prefix in the bucket, else its default batch."""
    settings = settings or get_settings()
    prefix = spec.retrain_window.prefix
    if prefix:
        if "://" in prefix or prefix.startswith("/"):
            return prefix if prefix.endswith("/") else prefix + "/"
        return f"s3://{settings.s3_bucket}/{prefix.rstrip('/')}/"
    if spec.default_batch_uri:
        return spec.default_batch_uri
    raise BatchReadError(f"no batch given and spec {spec.name!r} declares neither retrain_window.prefix nor default_batch_uri")


def select_window(objects: list[storage.ObjectInfo], window: RetrainWindowSpec) -> list[storage.ObjectInfo]:
    """Objects in the window, oldest first by key (landed batches are named in time order)."""
    chosen = sorted(objects, key=lambda o: o.uri)
    if window.since:
        since = datetime.fromisoformat(window.since)
        if since.tzinfo is None:
            since = since.replace(tzinfo=timezone.utc)
        chosen = [o for o in chosen if o.last_modified is not None and _aware(o.last_modified) >= since]
    if window.last_n:
        chosen = chosen[-window.last_n:]
    return chosen


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def read_batch(uri: str, window: RetrainWindowSpec, suffix: str = ".parquet", settings: Settings | None = None) -> Batch:
    """One object, or the window of objects under a prefix concatenated (fingerprint of their contents)."""
    if not is_prefix(uri):
        frame, fingerprint = storage.read_table(uri, settings)
        return Batch(uri=uri, fingerprint=fingerprint, frame=frame, sources=(uri,))
    objects = select_window(storage.list_objects(uri, suffix=suffix, settings=settings), window)
    if not objects:
        raise BatchReadError(f"no batches under {uri} in the retrain window ({window.model_dump(exclude_none=True)})")
    frames, fingerprints = [], []
    for info in objects:
        frame, fingerprint = storage.read_table(info.uri, settings)
        frames.append(frame)
        fingerprints.append(fingerprint)
    columns = [set(f.columns) for f in frames]
    if any(c != columns[0] for c in columns):
        differing = sorted(set.union(*columns) - set.intersection(*columns))
        raise BatchReadError(f"batches under {uri} disagree on their columns: {differing}")
    return Batch(
        uri=uri,
        fingerprint=combine_fingerprints(*fingerprints),
        frame=pd.concat(frames, ignore_index=True),
        sources=tuple(o.uri for o in objects),
    )
