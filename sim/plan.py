"""The simulator's pure logic: the simulated clock, what lands when, the compression the measured cost
allows, when a backlog means "stop this step", and the statistics of the table. No I/O: unit-tested alone
(tests/test_sim_plan.py); sim/run.py does the talking to the stack.

How the simulated clock maps onto what runs on real time (said again in the output and docs/scale.md):
- hourly batches: the simulator puts model i's batch of simulated hour h at real
  ``t0 + (h + i / n_models) * 3600 / compression``: spread over the hour, as real producers would be;
- weekly retrains: the specs carry ``schedule.cron: null`` and prefect.yaml's ``schedule/every-5-minutes``
  (real-time cron) is paused; the simulator creates one ``retrain/on-schedule`` run per model at each
  simulated Sunday 02:00 UTC (the spec's default cron), with an idempotency key per model and week;
- cooldowns: each spec's ``retrain_window.cooldown_minutes`` is the simulated cooldown divided by the
  compression (real minutes);
- trigger windows: ``retrain/on-drift`` debounces per model for ``within: 60`` real seconds, that is
  60 x compression simulated seconds (prefect.yaml is deployed as is);
- ``reconcile/hourly`` (real-time cron) is paused: every batch's notification is delivered here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

# The spec's default retrain cron, "0 2 * * 0": Sundays 02:00 UTC.
WEEKLY_RETRAIN = (6, 2)  # (weekday, hour), Monday = 0
# A Saturday evening: the first simulated week boundary falls six simulated hours in, so even a short run
# shows the weekly retrains.
DEFAULT_START = datetime(2026, 11, 28, 20, 0, tzinfo=timezone.utc)
KINDS = ("stable", "drifting", "degrading")
TRIGGER_WITHIN_SECONDS = 60.0  # prefect.yaml, retrain/on-drift


@dataclass(frozen=True)
class SimClock:
    """Simulated time ``start + (real - real_start) * compression``."""

    real_start: float
    compression: float
    start: datetime = DEFAULT_START

    def real_at(self, simulated_hours: float) -> float:
        return self.real_start + simulated_hours * 3600.0 / self.compression

    def simulated_at(self, real: float) -> datetime:
        return self.start + timedelta(seconds=(real - self.real_start) * self.compression)

    def real_minutes(self, simulated_minutes: float) -> float:
        return simulated_minutes / self.compression


def model_kind(index: int) -> str:
    """Of every ten models, six stay stable, two drift (summer flights) and two degrade (labels stop following the features)."""
    return "drifting" if index % 10 in (3, 7) else "degrading" if index % 10 in (5, 9) else "stable"


def onset_hour(total_hours: int) -> int:
    """When drifting and degrading models start to change: a quarter into the run (never the first hour)."""
    return max(1, total_hours // 4)


def batch_source(kind: str, hour: int, total_hours: int) -> str:
    """Which pool model's batch of ``hour`` is drawn from: ``base`` (the training months), ``summer`` (July-August,
    drifts against winter-spring), or ``shuffled`` (base rows with their delays shuffled: same features, labels gone)."""
    if hour < onset_hour(total_hours) or kind == "stable":
        return "base"
    return "summer" if kind == "drifting" else "shuffled"


@dataclass(frozen=True, order=True)
class Landing:
    real_offset: float
    """Seconds after the clock's real start."""
    hour: int
    model_index: int


def landings(n_models: int, total_hours: int, compression: float, first_hour: int = 0) -> list[Landing]:
    """Every batch of the run in real-time order: model i's batch of hour h at (h + i / n) simulated hours."""
    per_hour = 3600.0 / compression
    return sorted(
        Landing((hour + index / n_models) * per_hour, hour, index)
        for hour in range(first_hour, total_hours) for index in range(n_models)
    )


def week_boundaries(start: datetime, total_hours: int) -> list[int]:
    """Simulated hours (from ``start``) at which the weekly retrain falls due."""
    weekday, hour = WEEKLY_RETRAIN
    first = start.replace(hour=hour, minute=0, second=0, microsecond=0) + timedelta(days=(weekday - start.weekday()) % 7)
    if first < start:
        first += timedelta(days=7)
    offset = (first - start).total_seconds() / 3600.0
    return [int(math.ceil(offset)) + 168 * k for k in range(total_hours // 168 + 1) if math.ceil(offset) + 168 * k < total_hours]


@dataclass(frozen=True)
class Compression:
    value: float
    checks_per_second: float
    headroom: float
    reason: str


def derive_compression(n_models: int, checks: int, seconds: float, headroom: float = 2.0, ceiling: float = 3600.0) -> Compression:
    """The compression that keeps up: ``n_models`` checks per simulated hour, at ``checks`` measured in
    ``seconds`` (several side by side, so both workers count), with ``headroom`` left for retrains and promotions."""
    if checks <= 0 or seconds <= 0:
        raise ValueError(f"cannot derive a compression from {checks} checks in {seconds} s")
    rate = checks / seconds
    real_seconds_per_hour = n_models / rate * headroom
    value = min(ceiling, 3600.0 / real_seconds_per_hour)
    reason = (
        f"{checks} checks side by side took {seconds:.1f} s ({rate:.2f} checks/s); {n_models} models need {n_models} checks "
        f"per simulated hour, x{headroom:g} headroom for retrains and promotions: 1 simulated hour = {3600.0 / value:.1f} s"
    )
    return Compression(value, rate, headroom, reason)


@dataclass
class BacklogWatch:
    """Stops a step when drift checks pile up: more outstanding than ``limit_hours`` simulated hours of batches,
    or a count that kept growing over the last ``window`` samples while above one hour's worth."""

    n_models: int
    limit_hours: float = 3.0
    window: int = 6
    history: list[int] = field(default_factory=list)

    def observe(self, outstanding: int) -> str | None:
        self.history.append(outstanding)
        if outstanding > self.limit_hours * self.n_models:
            return f"{outstanding} drift checks outstanding, more than {self.limit_hours:g} simulated hours of batches"
        recent = self.history[-self.window:]
        growing = len(recent) == self.window and all(b > a for a, b in zip(recent, recent[1:]))
        if growing and outstanding > self.n_models:
            return f"drift checks outstanding grew {self.window} samples in a row to {outstanding}"
        return None


def name_bottleneck(awaiting_run: int, scheduled: int, pending: int, running: int, cpu_busy: float) -> str:
    """Where the outstanding work waits: before a run exists (bridge, events, triggers), before a worker takes
    it (Scheduled/Late), while its process starts (Pending), or while running on saturated CPUs."""
    stages = {
        "S3 -> bridge -> event -> trigger (no run created yet)": awaiting_run,
        "worker pickup (Scheduled/Late)": scheduled,
        "process start (Pending)": pending,
        f"execution (Running, CPU {cpu_busy:.0%} busy)": running,
    }
    stage, count = max(stages.items(), key=lambda item: item[1])
    return "none" if count == 0 else f"{stage}: {count} waiting"


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0-100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]


def spread(values: list[float]) -> str:
    """``p50 / p95 / max`` in seconds, or ``-``."""
    if not values:
        return "-"
    return f"{percentile(values, 50):.1f} / {percentile(values, 95):.1f} / {max(values):.1f} s (n={len(values)})"


def table(rows: list[tuple[str, str]]) -> str:
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"  {label:<{width}}  {value}" for label, value in rows)
