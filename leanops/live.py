"""What each served version did on live traffic, per model: requests, errors, latency and predictions.

The endpoint already counts all of it in its Prometheus metrics (``leanops.serving.metrics``, names below).
Every endpoint process turns its own counters into a summary per (version, role) now and then and writes
it to the object store, one object per process: ``<live root>/<model>/<instance>.json``. ``promote`` reads
every process's summary of the model and adds them up (:func:`read_model_summary`): the evidence covers
every replica, a Lambda container as much as a uvicorn worker, and needs no route into the endpoint.

Roles: ``champion`` (answered as the champion), ``canary`` (answered as another alias, the challenger),
``shadow`` (scored in the background, never answered).
"""

from __future__ import annotations

import json
import math
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from leanops import storage
from leanops.canary import Role
from leanops.settings import Settings, get_settings

# The endpoint's metric families (leanops.serving.metrics) read here.
REQUESTS, LATENCY, SCORES = "leanops_serving_requests", "leanops_serving_request_duration_seconds", "leanops_serving_prediction_score"
CHAMPION_ALIAS = "champion"


@dataclass
class Buckets:
    """A histogram: finite upper ``bounds`` and one count per bucket (the last one: above every bound)."""

    bounds: list[float] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    total: float = 0.0

    @property
    def n(self) -> int:
        return sum(self.counts)

    def add(self, other: "Buckets") -> None:
        if not other.counts:
            return
        if not self.counts:
            self.bounds, self.counts, self.total = list(other.bounds), list(other.counts), other.total
            return
        if self.bounds != other.bounds:
            raise ValueError(f"histograms with different buckets cannot be added: {self.bounds} vs {other.bounds}")
        self.counts = [a + b for a, b in zip(self.counts, other.counts)]
        self.total += other.total

    def quantile(self, q: float) -> float | None:
        """The upper bound of the bucket holding the ``q`` quantile (the histogram's resolution)."""
        if not self.n:
            return None
        seen = 0
        for bound, count in zip((*self.bounds, math.inf), self.counts):
            seen += count
            if seen >= q * self.n:
                return bound
        return math.inf

    @property
    def mean(self) -> float | None:
        return self.total / self.n if self.n else None

    @property
    def std(self) -> float | None:
        """From bucket midpoints; None when values lie above the last bound (no midpoint to use)."""
        if self.n < 2 or self.counts[-1]:
            return None
        mean = self.mean
        lows = [min(0.0, self.bounds[0]), *self.bounds[:-1]]
        squares = sum(c * (((lo + hi) / 2) - mean) ** 2 for lo, hi, c in zip(lows, self.bounds, self.counts))
        return math.sqrt(squares / (self.n - 1))

    def to_json(self) -> dict:
        return {"bounds": self.bounds, "counts": self.counts, "total": self.total}

    @classmethod
    def from_json(cls, data: dict) -> "Buckets":
        return cls([float(b) for b in data["bounds"]], [int(c) for c in data["counts"]], float(data["total"]))


@dataclass
class VersionStats:
    """One (version, role): plain sums, so the summaries of many processes add up."""

    requests: int = 0
    errors: int = 0
    latency_seconds: Buckets = field(default_factory=Buckets)
    scores: Buckets = field(default_factory=Buckets)

    def add(self, other: "VersionStats") -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.latency_seconds.add(other.latency_seconds)
        self.scores.add(other.scores)

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    def to_json(self) -> dict:
        return {"requests": self.requests, "errors": self.errors, "latency_seconds": self.latency_seconds.to_json(),
                "scores": self.scores.to_json()}

    @classmethod
    def from_json(cls, data: dict) -> "VersionStats":
        return cls(int(data["requests"]), int(data["errors"]), Buckets.from_json(data["latency_seconds"]), Buckets.from_json(data["scores"]))


def _histograms(samples: Iterable[Any], keys: tuple[str, ...]) -> dict[tuple[str, ...], Buckets]:
    """Prometheus histogram samples (cumulative ``_bucket``, ``_sum``) to Buckets per label values."""
    cumulative: dict[tuple[str, ...], list[tuple[float, float]]] = {}
    totals: dict[tuple[str, ...], float] = {}
    for sample in samples:
        key = tuple(sample.labels.get(k, "") for k in keys)
        if sample.name.endswith("_bucket"):
            cumulative.setdefault(key, []).append((float(sample.labels["le"]), sample.value))
        elif sample.name.endswith("_sum"):
            totals[key] = sample.value
    found = {}
    for key, points in cumulative.items():
        points.sort()
        counts = [int(round(b - a)) for (_, a), (_, b) in zip([(0.0, 0.0), *points[:-1]], points)]
        found[key] = Buckets([le for le, _ in points if le != math.inf], counts, totals.get(key, 0.0))
    return found


def stats_from_metrics(registry: Any, model: str) -> dict[str, VersionStats]:
    """This process's counters of ``model`` from the endpoint's Prometheus registry, per ``version/role``."""
    families = {family.name: family for family in registry.collect()}

    def samples(name: str) -> list[Any]:
        family = families.get(name)
        return [s for s in family.samples if s.labels.get("model") == model] if family else []

    scores = _histograms(samples(SCORES), ("version", "alias", "role"))
    stats: dict[str, VersionStats] = {}
    answered_as: dict[str, dict[str, int]] = {}
    for (version, alias, role), buckets in scores.items():
        mine: Role = "shadow" if role == "shadow" else ("champion" if alias == CHAMPION_ALIAS else "canary")
        entry = stats.setdefault(f"{version}/{mine}", VersionStats())
        entry.scores.add(buckets)
        if mine == "shadow":
            entry.requests += buckets.n  # rows scored in the background
        else:
            answered_as.setdefault(version, {}).setdefault(mine, 0)
            answered_as[version][mine] += buckets.n
    # Requests and latency are counted per version only: they go to the role it answered most as
    # (a version answers as one alias at a time; a promotion mid-process moves it from canary to champion).
    def role_of(version: str) -> Role:
        roles = answered_as.get(version) or {"champion": 0}
        return max(roles, key=roles.get)

    for sample in samples(REQUESTS):
        version = sample.labels.get("version", "")
        if not version or not sample.name.endswith("_total"):
            continue
        entry = stats.setdefault(f"{version}/{role_of(version)}", VersionStats())
        entry.requests += int(sample.value)
        entry.errors += int(sample.value) if sample.labels.get("status", "").startswith("5") else 0
    for (version,), buckets in _histograms(samples(LATENCY), ("version",)).items():
        stats.setdefault(f"{version}/{role_of(version)}", VersionStats()).latency_seconds.add(buckets)
    return stats


def live_root(settings: Settings | None = None) -> str:
    return (settings or get_settings()).resolved_serving_live_root.rstrip("/")


def summary_uri(model: str, instance: str, settings: Settings | None = None) -> str:
    return f"{live_root(settings)}/{model}/{instance}.json"


def new_instance_id() -> str:
    """One per endpoint process: its summary replaces only its own earlier one."""
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


def publish(registry: Any, model: str, instance: str, settings: Settings | None = None) -> str:
    """Write this process's summary of ``model`` (replacing its previous one); returns where."""
    document = {
        "model": model, "instance": instance, "updated_at": datetime.now(timezone.utc).isoformat(),
        "versions": {key: stats.to_json() for key, stats in stats_from_metrics(registry, model).items()},
    }
    return storage.write_bytes(summary_uri(model, instance, settings), json.dumps(document).encode(), settings)


@dataclass(frozen=True)
class ModelLiveSummary:
    """Every endpoint process's counters of one model, added up per version and role."""

    model: str
    instances: int
    stats: dict[str, VersionStats]

    def of(self, version: str, *roles: Role) -> VersionStats:
        total = VersionStats()
        for role in roles:
            found = self.stats.get(f"{version}/{role}")
            if found is not None:
                total.add(found)
        return total


def read_model_summary(model: str, settings: Settings | None = None) -> ModelLiveSummary:
    """Add up every endpoint process's summary of ``model``. An unreadable store raises (never "no traffic")."""
    stats: dict[str, VersionStats] = {}
    objects = storage.list_objects(f"{live_root(settings)}/{model}/", suffix=".json", settings=settings)
    for info in objects:
        document = json.loads(storage.read_bytes(info.uri, settings))
        for key, data in document.get("versions", {}).items():
            stats.setdefault(key, VersionStats()).add(VersionStats.from_json(data))
    return ModelLiveSummary(model, len(objects), stats)


class SummaryPublisher:
    """Writes this process's summaries of some models every ``interval`` seconds from a daemon thread."""

    def __init__(self, registry: Any, models: list[str], interval: float, settings: Settings | None = None) -> None:
        self.instance = new_instance_id()
        self._registry, self._models, self._interval, self._settings = registry, models, interval, settings
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None

    def publish_all(self) -> None:
        for model in self._models:
            publish(self._registry, model, self.instance, self._settings)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.publish_all()
                self.last_error = None
            except Exception as exc:  # noqa: BLE001 - a store outage must not stop serving; kept for logs, retried next round
                self.last_error = f"{type(exc).__name__}: {exc}"

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="live-summary", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread and write one last summary (a short-lived process still counts)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.publish_all()
