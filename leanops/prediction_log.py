"""The prediction log: what the endpoint answered, written to the object store in batches, off the request path.

Two streams, with different readers:

- **sample**: a uniform random share of predictions (``serving.log_sample_share``, chosen by prediction id,
  see ``leanops.canary.in_log_sample``). It lands as an ordinary batch under
  ``<incoming prefix><model>/_predictions/sample/``, so the S3 bridge sends it to drift-monitor like any
  landed batch: what the endpoint sees is checked for drift. A batch is written once it holds enough rows
  for the contract and a conclusive drift check (``sample_batch_rows``).
- **inspect**: low-confidence and out-of-range predictions, under ``<prediction log root>/<model>/inspect/``,
  outside the incoming prefix: skewed by design, they are never drift-checked.

Neither stream is training data: the retrain window leaves out every object under a ``_predictions``
folder (``is_log_path``), whatever ``retrain_window.recursive`` says. Labels that arrive later land under
``<incoming prefix><model>/_predictions/labels/`` with a ``prediction_id`` column and are joined to the
sample (``leanops.prediction_labels``). The log holds customer data: ``prune`` deletes what is older than
the retention setting.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import pandas as pd

from leanops import storage
from leanops.canary import in_log_sample
from leanops.settings import Settings, get_settings
from leanops.spec import Spec

logger = logging.getLogger(__name__)

LOG_FOLDER = "_predictions"
SAMPLE, INSPECT, LABELS, REMAINDER = "sample", "inspect", "labels", "remainder"
# Columns the log adds beside the request's own; a labels batch names its predictions by PREDICTION_ID.
PREDICTION_ID, VERSION, SERVED_BY, VALUE, CONFIDENCE, PREDICTED_AT, WHY = (
    "prediction_id", "prediction_version", "served_by", "prediction_value", "prediction_confidence", "predicted_at",
    "logged_because",
)


# --- where the streams live -------------------------------------------------------------------------


def incoming_log_prefix(model: str, stream: str, settings: Settings | None = None) -> str:
    """``s3://<bucket>/<incoming prefix><model>/_predictions/<stream>/``: routed to drift-monitor by the bridge."""
    settings = settings or get_settings()
    return f"s3://{settings.s3_bucket}/{settings.s3_incoming_prefix}{model}/{LOG_FOLDER}/{stream}/"


def kept_log_prefix(model: str, stream: str, settings: Settings | None = None) -> str:
    """``<prediction log root>/<model>/<stream>/``: kept for people, never routed to drift-monitor."""
    settings = settings or get_settings()
    return f"{settings.resolved_prediction_log_root.rstrip('/')}/{model}/{stream}/"


def is_log_path(uri_or_key: str) -> bool:
    """Whether an object belongs to the prediction log (any stream, labels included): never training data."""
    return f"/{LOG_FOLDER}/" in uri_or_key.split("?versionId=", 1)[0]


def stream_of(uri: str) -> str | None:
    """``sample``, ``labels`` ... for an object of the log; None for any other object."""
    path = uri.split("?versionId=", 1)[0]
    if not is_log_path(path):
        return None
    return path.split(f"/{LOG_FOLDER}/", 1)[1].split("/", 1)[0]


def sample_batch_rows(spec: Spec) -> int:
    """Rows of one sample batch: enough for the contract and for a conclusive drift check."""
    return max(spec.contract.min_rows, spec.drift.min_rows)


# --- why a prediction is kept for inspection ---------------------------------------------------------


@dataclass(frozen=True)
class FeatureRanges:
    """The values a version saw in training: numeric ranges and known categories of its raw inputs."""

    numeric: dict[str, tuple[float, float]]
    categories: dict[str, frozenset[str]]

    @classmethod
    def from_reference(cls, reference: pd.DataFrame, spec: Spec) -> "FeatureRanges":
        numeric = {c: (float(reference[c].min()), float(reference[c].max()))
                   for c in spec.numeric_features if c in reference and reference[c].notna().any()}
        categories = {c: frozenset(reference[c].dropna().astype(str)) for c in spec.categorical_features if c in reference}
        return cls(numeric, categories)

    def reasons(self, row: dict[str, Any]) -> list[str]:
        """Which inputs of one row lie outside what training saw (``temp=131 outside [..]``, ``dest='XYZ' unseen``).
        Plain Python per row: it runs for every answered prediction, in the endpoint's process."""
        found = []
        for column, (low, high) in self.numeric.items():
            value = row.get(column)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and not low <= value <= high and value == value:
                found.append(f"{column}={value:g} outside [{low:g}, {high:g}]")
        for column, known in self.categories.items():
            value = row.get(column)
            if value is not None and value == value and str(value) not in known:
                found.append(f"{column}={value!r} unseen")
        return found


def confidence_of(score: float, spec: Spec) -> float | None:
    """How sure a classifier is of its answer: the probability of the class it predicted. ``score`` is the
    endpoint's: the positive-class probability (binary) or the top-class probability (multiclass)."""
    if spec.task == "binary":
        return max(score, 1.0 - score)
    return score if spec.task == "multiclass" else None


# --- buffering and writing ---------------------------------------------------------------------------


class PredictionLog:
    """Buffers one model's logged predictions; ``flush`` writes full batches. Both run off the request
    path (the endpoint's sink thread and a flusher thread)."""

    def __init__(
        self, spec: Spec, settings: Settings | None = None, instance: str | None = None,
        ranges: Callable[[str], FeatureRanges | None] | None = None,
    ) -> None:
        """``ranges``: what a version saw in training (None: no out-of-range check for it)."""
        self.spec = spec
        self._ranges = ranges
        self.settings = settings or get_settings()
        self.instance = instance or uuid.uuid4().hex[:8]
        self._lock = threading.Lock()
        self._buffers: dict[str, list[dict]] = {SAMPLE: [], INSPECT: []}
        self._sequence = 0
        self.dropped = 0

    def offer(self, records: Sequence[Any]) -> None:
        """Log some answered predictions (``leanops.serving.extensions.PredictionRecord``: prediction_id, version,
        alias, received_at, row, score, shadow). Rows in the sample go to the sample stream, low-confidence or
        out-of-range ones to the inspection stream (a row may be in both). Shadow scores were never an
        answer, and their rows are already logged once: they are left out."""
        answered = [r for r in records if not r.shadow]
        threshold = self.spec.serving.low_confidence_below
        sample, inspect = [], []
        for record, why in zip(answered, self._out_of_range(answered)):
            confidence = confidence_of(float(record.score), self.spec)
            if threshold is not None and confidence is not None and confidence < threshold:
                why.append(f"confidence {confidence:.3f} < {threshold:g}")
            chosen = in_log_sample(record.prediction_id, self.spec.name, self.spec.serving.log_sample_share)
            if not (chosen or why):
                continue
            logged = {**record.row, PREDICTION_ID: record.prediction_id, VERSION: record.version, SERVED_BY: record.alias,
                      VALUE: float(record.score), CONFIDENCE: confidence,
                      PREDICTED_AT: datetime.fromtimestamp(record.received_at, timezone.utc).isoformat()}
            if chosen:
                sample.append(logged)
            if why:
                inspect.append({**logged, WHY: "; ".join(why)})
        if sample or inspect:
            with self._lock:
                self._buffers[SAMPLE].extend(sample)
                self._buffers[INSPECT].extend(inspect)
                self._bound()

    def _bound(self) -> None:
        """While the store cannot be written, keep the newest rows only (a bounded memory, the drop counted)."""
        for stream, cap in ((SAMPLE, max(self.settings.prediction_log_max_rows, 2 * sample_batch_rows(self.spec))),
                            (INSPECT, self.settings.prediction_log_max_rows)):
            excess = len(self._buffers[stream]) - cap
            if excess > 0:
                del self._buffers[stream][:excess]
                self.dropped += excess

    def _out_of_range(self, records: Sequence[Any]) -> list[list[str]]:
        if self._ranges is None:
            return [[] for _ in records]
        found = []
        for record in records:
            ranges = self._ranges(record.version)
            found.append(ranges.reasons(record.row) if ranges is not None else [])
        return found

    def pending(self) -> dict[str, int]:
        with self._lock:
            return {stream: len(rows) for stream, rows in self._buffers.items()}

    def flush(self, final: bool = False) -> list[str]:
        """Write what is due: full sample batches; the inspection rows (every call). ``final`` (shutdown)
        also writes a sample remainder too small for the contract, kept beside the inspection stream
        (it would only be rejected by drift-monitor). Rows whose write fails go back to the buffer."""
        size = sample_batch_rows(self.spec)
        with self._lock:
            sample = self._buffers[SAMPLE]
            full = len(sample) - len(sample) % size
            batches = [(incoming_log_prefix(self.spec.name, SAMPLE, self.settings), sample[i:i + size]) for i in range(0, full, size)]
            rest = sample[full:]
            if final and rest:
                batches.append((kept_log_prefix(self.spec.name, REMAINDER, self.settings), rest))
                rest = []
            if self._buffers[INSPECT]:
                batches.append((kept_log_prefix(self.spec.name, INSPECT, self.settings), self._buffers[INSPECT]))
            self._buffers = {SAMPLE: rest, INSPECT: []}
        written = []
        for index, (prefix, rows) in enumerate(batches):
            try:
                written.append(self._write(prefix, rows))
            except Exception:
                # Nothing is lost: every batch not yet written goes back to its buffer for the next flush.
                with self._lock:
                    for later_prefix, later_rows in batches[index:]:
                        self._buffers[INSPECT if later_prefix.endswith(f"/{INSPECT}/") else SAMPLE][:0] = later_rows
                    self._bound()
                raise
        return written

    def _write(self, prefix: str, rows: list[dict]) -> str:
        with self._lock:
            self._sequence += 1
            sequence = self._sequence
        now = datetime.now(timezone.utc)
        uri = f"{prefix}{now:%Y-%m-%d}/{now:%H%M%S}-{self.instance}-{sequence:06d}.parquet"
        return storage.write_table(pd.DataFrame.from_records(rows), uri, self.settings)


class LogFlusher:
    """Flushes some logs every ``interval`` seconds from a daemon thread; ``stop`` flushes the rest."""

    def __init__(self, logs: list[PredictionLog], interval: float) -> None:
        self._logs, self._interval = logs, interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            for log in self._logs:
                try:
                    log.flush()
                    self.last_error = None
                except Exception as exc:  # noqa: BLE001 - the rows stay buffered and the next round retries; serving goes on
                    if self.last_error is None:
                        logger.warning("the prediction log of %s cannot be written (kept in memory, retried): %s", log.spec.name, exc)
                    self.last_error = f"{log.spec.name}: {type(exc).__name__}: {exc}"

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="prediction-log", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> list[str]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        return [uri for log in self._logs for uri in log.flush(final=True)]


# --- retention -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PruneResult:
    cutoff: str
    deleted: tuple[str, ...]
    kept: int
    dry_run: bool


def log_objects(settings: Settings | None = None) -> list[storage.ObjectInfo]:
    """Every object of the log: both streams, labels and remainders of every model, and live summaries."""
    settings = settings or get_settings()
    incoming = [o for o in storage.list_objects(f"s3://{settings.s3_bucket}/{settings.s3_incoming_prefix}", settings=settings)
                if is_log_path(o.uri)]
    kept = storage.list_objects(settings.resolved_prediction_log_root.rstrip("/") + "/", settings=settings)
    live = storage.list_objects(settings.resolved_serving_live_root.rstrip("/") + "/", settings=settings)
    return incoming + kept + live


def prune(older_than_days: float | None = None, dry_run: bool = False, now: datetime | None = None,
          settings: Settings | None = None) -> PruneResult:
    """Delete log objects last written before the retention window (``prediction_log_retention_days``)."""
    settings = settings or get_settings()
    days = settings.prediction_log_retention_days if older_than_days is None else older_than_days
    cutoff = (now or datetime.now(timezone.utc)) - timedelta(days=days)
    objects = log_objects(settings)
    old = [o.uri for o in objects if o.last_modified is not None and _utc(o.last_modified) < cutoff]
    if old and not dry_run:
        storage.delete_objects(old, settings)
    return PruneResult(cutoff.isoformat(), tuple(old), len(objects) - len(old), dry_run)


def _utc(moment: datetime) -> datetime:
    # Local files report naive local times; S3 reports UTC with its offset.
    return moment.astimezone(timezone.utc) if moment.tzinfo is None else moment
