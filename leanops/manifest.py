"""Which landed batches a drift check has processed, and which ones none has: the reconciliation's manifest.

A lost S3 notification must only delay work. The drift-monitor flow marks every batch it finished
(whatever the outcome: ok, drift, inconclusive, no champion, or rejected for good); the hourly
reconciliation lists the incoming prefix, subtracts the marked objects and announces the rest again.

The manifest is one small JSON marker per processed object under ``<monitoring root>/processed/``,
named by a hash of the object's URI and ETag, never one shared table: drift checks run side by side,
and a read-modify-write of one file would lose marks (each lost mark re-runs a batch). A put is
atomic, a marker is written once, and reading the manifest is one listing of marker names.

A batch whose model has no (loadable) spec yet is not processed: it lands before its spec more often
than not when a team starts. Its check records it as *waiting for a spec* (a marker under
``<monitoring root>/waiting-for-spec/``); the reconciliation leaves it alone while the spec is still
missing and announces it again as soon as the spec loads.

Re-announcing is safe only because of the markers: Prefect forgets an event id after 30 minutes
(an in-memory cache of the trigger service, also lost on a server restart), so the same id
announced an hour later would start a second run.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone

from leanops import storage
from leanops.errors import BatchReadError, SpecError
from leanops.progress import Progress, quiet
from leanops.settings import Settings, get_settings

_MARKER_SUFFIX = ".json"
# A batch turned away for good (unreadable, contract broken): its status starts with this, then the reason.
REJECTED = "rejected"


def rejected_status(error: BaseException) -> str:
    """The status of a rejected batch: the reason travels with the mark ("why was this never checked?")."""
    return f"{REJECTED}: {type(error).__name__}: {error}"[:2000]


@dataclass(frozen=True)
class ProcessedMark:
    uri: str
    """The object without a version pin: what a listing of the incoming prefix shows."""
    identity: str
    """What a listing says the object's content is: its ETag (S3) or content hash (local files)."""
    model: str
    status: str
    processed_at: str
    flow_run_id: str = ""

    @property
    def rejected(self) -> bool:
        return self.status.startswith(REJECTED)


def manifest_root(settings: Settings | None = None) -> str:
    settings = settings or get_settings()
    return f"{settings.resolved_monitoring_root.rstrip('/')}/processed"


def waiting_root(settings: Settings | None = None) -> str:
    settings = settings or get_settings()
    return f"{settings.resolved_monitoring_root.rstrip('/')}/waiting-for-spec"


def unversioned(uri: str) -> str:
    return uri.split("?versionId=", 1)[0]


def identity_of(info: storage.ObjectInfo) -> str:
    # Not ObjectInfo.fingerprint: for S3 it mixes in the version id, which a listing does not show.
    return info.etag or info.fingerprint


def marker_name(uri: str, identity: str) -> str:
    digest = hashlib.sha256(f"{unversioned(uri)}|{identity}".encode()).hexdigest()[:32]
    return digest + _MARKER_SUFFIX


def _mark(root: str, batch_uri: str, model: str, status: str, flow_run_id: str, settings: Settings | None) -> ProcessedMark | None:
    if batch_uri.endswith("/"):
        return None
    info = storage.stat(batch_uri, settings)
    mark = ProcessedMark(
        uri=unversioned(batch_uri), identity=identity_of(info), model=model, status=status,
        processed_at=datetime.now(timezone.utc).isoformat(), flow_run_id=flow_run_id,
    )
    storage.write_bytes(f"{root}/{marker_name(mark.uri, mark.identity)}", json.dumps(asdict(mark), sort_keys=True).encode(), settings)
    return mark


def mark_processed(batch_uri: str, model: str, status: str, flow_run_id: str = "", settings: Settings | None = None) -> ProcessedMark | None:
    """Record that ``batch_uri`` (one object, optionally version-pinned) was processed; None for a
    prefix (a window of batches checked together is no landed object a listing would show).

    The identity comes from the object as it is now (one HEAD): a version pin reads that version's
    ETag; without one, an overwrite during the check is marked instead of the checked content, and
    the overwrite's own notification still starts its own check.
    """
    return _mark(manifest_root(settings), batch_uri, model, status, flow_run_id, settings)


def mark_waiting_for_spec(batch_uri: str, model: str, why: str, flow_run_id: str = "", settings: Settings | None = None) -> ProcessedMark | None:
    """Record that ``batch_uri`` could not be checked because ``model`` has no loadable spec yet. It stays
    unprocessed: the reconciliation announces it again once the spec loads."""
    return _mark(waiting_root(settings), batch_uri, model, f"waiting for spec: {why}"[:500], flow_run_id, settings)


def spec_loads(model: str) -> bool:
    """Whether the model's spec can be loaded now (from the specs folder the checks use)."""
    from leanops.spec import load_spec

    try:
        load_spec(model)
    except SpecError:
        return False
    return True


def still_waiting_for_spec(spec_ready: Callable[[str], bool] = spec_loads, settings: Settings | None = None) -> frozenset[str]:
    """Marker names of the batches waiting for a spec that still does not load (one listing, and one
    small read per waiting batch: there are few, and they leave once their spec exists)."""
    waiting = storage.list_objects(waiting_root(settings) + "/", suffix=_MARKER_SUFFIX, settings=settings)
    ready: dict[str, bool] = {}
    parked = set()
    for info in waiting:
        model = json.loads(storage.read_bytes(info.uri, settings))["model"]
        if model not in ready:
            ready[model] = spec_ready(model)
        if not ready[model]:
            parked.add(info.uri.rsplit("/", 1)[1])
    return frozenset(parked)


def processed_markers(settings: Settings | None = None, on_page: Callable[[int], None] | None = None) -> frozenset[str]:
    """Names of every marker in the manifest (one listing; bodies are not read)."""
    listed = storage.list_objects(manifest_root(settings) + "/", suffix=_MARKER_SUFFIX, settings=settings, on_page=on_page)
    return frozenset(info.uri.rsplit("/", 1)[1] for info in listed)


def read_mark(uri: str, identity: str, settings: Settings | None = None) -> ProcessedMark | None:
    target = f"{manifest_root(settings)}/{marker_name(uri, identity)}"
    try:
        data = storage.read_bytes(target, settings)
    except BatchReadError:  # no marker: not processed
        return None
    return ProcessedMark(**json.loads(data))


def checked_uri(parameters: dict) -> str:
    """The object a drift-monitor run was asked to check, from its parameters (no version pin)."""
    uri = parameters.get("batch_uri") or ""
    if not uri and parameters.get("bucket") and parameters.get("key"):
        uri = f"s3://{parameters['bucket']}/{parameters['key']}"
    return unversioned(uri)


def unprocessed(
    objects: Iterable[storage.ObjectInfo],
    markers: frozenset[str],
    min_age: timedelta,
    now: datetime | None = None,
    in_flight: Iterable[str] = (),
) -> list[storage.ObjectInfo]:
    """Objects no check has marked, oldest first, leaving out those younger than ``min_age`` (their
    notification may still be on its way) and those a run not yet finished is about to check
    (``in_flight``: URIs of scheduled, pending or running checks, e.g. a backlog while workers are down)."""
    now = now or datetime.now(timezone.utc)
    busy = {unversioned(uri) for uri in in_flight}
    waiting = [
        info for info in objects
        if marker_name(info.uri, identity_of(info)) not in markers
        and info.uri not in busy
        and now - _landed(info, now) >= min_age
    ]
    return sorted(waiting, key=lambda o: (_landed(o, now), o.uri))


def _landed(info: storage.ObjectInfo, now: datetime) -> datetime:
    if info.last_modified is None:
        return datetime.min.replace(tzinfo=timezone.utc)  # unknown age: old enough (a lost batch costs more than a re-check)
    # Local files carry naive local times; S3 gives aware UTC ones.
    return info.last_modified.astimezone(timezone.utc)


def incoming_uri(prefix: str = "", settings: Settings | None = None) -> str:
    """Where batches land: ``prefix`` (a URI, or a key prefix in the bucket), default the incoming prefix."""
    settings = settings or get_settings()
    if "://" in prefix:
        return prefix
    return f"s3://{settings.s3_bucket}/{prefix or settings.s3_incoming_prefix}"


def find_unprocessed(
    prefix_uri: str, suffix: str, min_age: timedelta, in_flight: Iterable[str] = (), settings: Settings | None = None,
    spec_ready: Callable[[str], bool] = spec_loads, on_progress: Progress = quiet,
) -> list[storage.ObjectInfo]:
    """The landed objects under ``prefix_uri`` that no check has processed or is about to (and at least
    ``min_age`` old), leaving out those still waiting for their model's spec.

    ``on_progress`` follows the two listings, which grow with everything kept: landed objects (the first
    half) and processed markers (most of the second); their lengths are not known before they end."""
    objects = storage.list_objects(prefix_uri, suffix=suffix, settings=settings,
                                   on_page=lambda n: on_progress(0.0, f"{n:,} keys listed under {prefix_uri}"))
    on_progress(0.5, f"{len(objects):,} landed objects; listing the processed markers")
    markers = processed_markers(settings, on_page=lambda n: on_progress(0.5, f"{len(objects):,} landed objects; {n:,} markers listed"))
    on_progress(0.9, f"{len(objects):,} landed objects, {len(markers):,} processed markers; checking batches waiting for a spec")
    waiting = unprocessed(objects, markers | still_waiting_for_spec(spec_ready, settings), min_age, in_flight=in_flight)
    on_progress(1.0, f"{len(objects):,} landed objects, {len(markers):,} processed markers: {len(waiting):,} not processed")
    return waiting
