"""Which landed batches a retrain learns from, and reading them as one batch.

A batch URI that ends with ``/`` is a prefix (S3) or folder (local). The spec's retrain window picks
what a retrain learns from there, in two steps:

1. which objects count: data files with one of the window's suffixes, directly under the prefix
   unless ``recursive``, not empty, not a marker (``_SUCCESS``, ``.keep`` ...), not part of the
   prediction log (a ``_predictions`` folder), and not a batch the processed-batch manifest records
   as rejected;
2. which rows: the last ``days`` days by the spec's time column, counted back from the newest row
   read (so a replay of old data in fast time behaves like real time), widened to at least
   ``min_rows`` rows. An object count never decides it: a burst of small objects adds its rows, it
   does not push months of data out.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd

from leanops import manifest, memory, prediction_log, storage
from leanops.errors import BatchReadError, GateFailed
from leanops.progress import Progress, quiet
from leanops.results import Batch, BatchIdentity, combine_fingerprints
from leanops.settings import Settings, get_settings
from leanops.spec import RetrainWindowSpec, Spec

RejectedTest = Callable[[storage.ObjectInfo], bool]


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


def counted_objects(prefix_uri: str, objects: list[storage.ObjectInfo], window: RetrainWindowSpec) -> list[storage.ObjectInfo]:
    """The objects under ``prefix_uri`` that are landed batches by the window's rules, oldest first by key."""
    # Local listings name files by plain path, whatever the prefix was given as (file://...).
    root = prefix_uri if storage.is_s3(prefix_uri) else str(storage.local_path(prefix_uri)).rstrip("/") + "/"
    chosen = []
    for info in sorted(objects, key=lambda o: o.uri):
        relative = info.uri[len(root):] if info.uri.startswith(root) else info.uri.rsplit("/", 1)[-1]
        name = relative.rsplit("/", 1)[-1]
        if "/" in relative and not window.recursive:
            continue
        # The prediction log's streams and labels are what the endpoint saw, not training data (they are
        # sampled and skewed), even when the log sits under the window's prefix and the window is recursive.
        if prediction_log.is_log_path("/" + relative):
            continue
        # Hadoop/Spark write _SUCCESS and _committed markers, editors and syncs leave dot files.
        if name.startswith(("_", ".")) or info.size == 0:
            continue
        if not name.lower().endswith(tuple(s.lower() for s in window.suffixes)):
            continue
        chosen.append(info)
    if window.last_n:
        chosen = chosen[-window.last_n:]
    return chosen


def rejected_by_manifest(settings: Settings | None = None) -> RejectedTest:
    """Whether a landed object was recorded as rejected (unreadable, contract broken) by its drift check:
    one listing of the manifest (on first use), then one small read per object that has a mark."""
    listed: list[frozenset[str]] = []

    def rejected(info: storage.ObjectInfo) -> bool:
        if not listed:
            listed.append(manifest.processed_markers(settings))
        identity = manifest.identity_of(info)
        if manifest.marker_name(info.uri, identity) not in listed[0]:
            return False
        mark = manifest.read_mark(info.uri, identity, settings)
        return mark is not None and mark.rejected

    return rejected


def _never_rejected(info: storage.ObjectInfo) -> bool:
    return False


def _object_identity(uri: str, object_identity: str) -> str:
    return combine_fingerprints("object", uri, object_identity)


def _window_identity(uri: str, objects: list[tuple[str, str]]) -> str:
    # Every counted, not rejected object with its identity: the same objects give the same rows (the
    # window's rules and time bounds are the spec's, and the bounds count from the newest row read).
    return combine_fingerprints("window", uri, *(f"{o}={i}" for o, i in objects))


def identify_batch(
    uri: str, window: RetrainWindowSpec, is_rejected: RejectedTest = _never_rejected, settings: Settings | None = None,
) -> BatchIdentity:
    """The identity :func:`read_batch` would give the batch at ``uri`` now, from a HEAD / stat or a listing,
    without reading any object: equal identities mean equal content (see :class:`BatchIdentity`)."""
    if not is_prefix(uri):
        return BatchIdentity(uri, _object_identity(uri, storage.object_identity(uri, settings)))
    objects = _window_objects(uri, window, is_rejected, settings)
    return BatchIdentity(uri, _window_identity(uri, [(o.uri, o.identity) for o in objects]))


def _window_objects(uri: str, window: RetrainWindowSpec, is_rejected: RejectedTest, settings: Settings | None) -> list[storage.ObjectInfo]:
    candidates = counted_objects(uri, storage.list_objects(uri, settings=settings), window)
    rejected = [o.uri for o in candidates if is_rejected(o)]
    objects = [o for o in candidates if o.uri not in rejected]
    if not objects:
        raise BatchReadError(
            f"no batches under {uri} in the retrain window ({window.model_dump(exclude_none=True)})"
            + (f"; rejected and left out: {rejected}" if rejected else "")
        )
    return objects


def read_batch(
    uri: str,
    window: RetrainWindowSpec,
    time_column: str | None = None,
    is_rejected: RejectedTest = _never_rejected,
    settings: Settings | None = None,
    on_progress: Progress = quiet,
) -> Batch:
    """One object as it is, or the window of landed batches under a prefix as one batch (see the module).
    ``on_progress`` hears of each object of a window read (shares by bytes: objects differ in size)."""
    if not is_prefix(uri):
        frame, fingerprint, identity = storage.read_table_with_identity(uri, settings)
        return Batch(uri=uri, fingerprint=fingerprint, frame=frame, sources=(uri,), identity=_object_identity(uri, identity))
    if (window.days or window.since) and not time_column:
        raise BatchReadError(
            f"retrain_window.days = {window.days!r} / since = {window.since!r} need the spec's time.column to date rows; "
            "the spec has none"
        )
    objects = _window_objects(uri, window, is_rejected, settings)
    window_bytes = sum(o.size for o in objects)
    # Each object may fit while the window does not: refused as a whole, before the first read.
    memory.check_batch_fits(
        f"the retrain window under {uri} ({len(objects)} objects)", window_bytes, settings,
        advice="train with the spec's model.engine: dask (a Dask cluster reads it), shorten the window, or give the worker more memory",
    )
    frames, fingerprints, identities = [], [], []
    read_bytes, read_rows = 0, 0
    on_progress(0.0, f"{len(objects)} objects in the window, {window_bytes:,} bytes")
    for info in objects:
        frame, fingerprint, identity = storage.read_table_with_identity(info.uri, settings)
        frames.append(frame)
        fingerprints.append(fingerprint)
        identities.append((info.uri, identity))
        read_bytes, read_rows = read_bytes + info.size, read_rows + len(frame)
        on_progress(read_bytes / window_bytes if window_bytes else 1.0, f"read {len(frames)} of {len(objects)} objects, {read_rows:,} rows")
    columns = [set(f.columns) for f in frames]
    if any(c != columns[0] for c in columns):
        differing = sorted(set.union(*columns) - set.intersection(*columns))
        raise BatchReadError(f"batches under {uri} disagree on their columns: {differing}")
    frame = pd.concat(frames, ignore_index=True)
    source = pd.Series(np.repeat(np.arange(len(frames)), [len(f) for f in frames]))
    keep, bounds = _rows_in_window(frame, window, time_column, uri)
    used = sorted(set(source[keep].tolist()))
    return Batch(
        uri=uri,
        fingerprint=combine_fingerprints(*(fingerprints[i] for i in used), *([bounds] if bounds else [])),
        frame=frame[keep.to_numpy()].reset_index(drop=True),
        sources=tuple(objects[i].uri for i in used),
        identity=_window_identity(uri, identities),
    )


def _rows_in_window(frame: pd.DataFrame, window: RetrainWindowSpec, time_column: str | None, uri: str) -> tuple[pd.Series, str]:
    """Which rows the window keeps, and a description of its bounds (part of the batch's fingerprint)."""
    keep = pd.Series(True, index=frame.index)
    if time_column and (window.days or window.since):
        if time_column not in frame:
            raise BatchReadError(f"batches under {uri} have no time column {time_column!r} (spec time.column) to date rows by")
        times = pd.to_datetime(frame[time_column], utc=True, errors="coerce")
        keep = times.notna()
        if window.since:
            keep &= times >= _utc(datetime.fromisoformat(window.since))
        if window.days and keep.any():
            newest = times[keep].max()
            recent = keep & (times > newest - timedelta(days=window.days))
            if recent.sum() < window.min_rows:
                # Too little in the last `days`: reach back for the newest min_rows rows instead.
                floor = times[keep].nlargest(window.min_rows).min()
                recent = keep & (times >= floor)
            keep = recent
    if keep.sum() < window.min_rows:
        raise BatchReadError(
            f"the retrain window under {uri} holds {int(keep.sum())} rows, fewer than retrain_window.min_rows = {window.min_rows}"
        )
    if time_column and (window.days or window.since) and keep.any():
        times = pd.to_datetime(frame[time_column], utc=True, errors="coerce")[keep]
        return keep, f"{times.min().isoformat()}..{times.max().isoformat()}"
    return keep, ""


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def check_training_size(train_rows: int, champion_rows: float | None, champion_version: str | None, allow_small: bool) -> str:
    """A challenger trained on less than half the champion's training rows is refused (GateFailed) unless
    ``allow_small``: a window that shrank (a burst of tiny files, a broken export) must not produce a model
    that only the promotion gates stand in front of. Returns what was decided, for the log."""
    if not champion_rows:
        return f"training on {train_rows} rows (no champion row count to compare with)"
    verdict = f"training on {train_rows} rows; champion v{champion_version} trained on {int(champion_rows)}"
    if train_rows * 2 >= champion_rows:
        return verdict
    if allow_small:
        return verdict + ": fewer than half, registered anyway (allow_small)"
    raise GateFailed(
        f"{verdict}: fewer than half, so nothing is registered. Check the retrain window's batches, or retrain "
        "with allow_small=True to register it anyway"
    )
