"""Retrain cooldown: a storm of drift events must not start a storm of retrains, and a failed retrain
must not use up the cooldown.

The record per model holds when the last *successful* retrain started and which retrains are running
now (claims). A drift retrain is turned away while another retrain of the model runs or within the
cooldown after the last success. A claim becomes the last success when its run completes, and is
dropped when it fails. A run killed without a word (SIGKILL, a lost machine) runs no hook: the next
claim settles such claims from the runs' final states as the orchestrator records them (a killed run
ends Crashed once it stops sending heartbeats); a claim nobody can settle lapses after the cooldown.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from collections.abc import Mapping
from typing import Any

# Only these reasons are throttled: a schedule or a person asking for a retrain always gets one.
THROTTLED_REASONS = frozenset({"drift"})


@dataclass(frozen=True)
class RetrainGate:
    allowed: bool
    reason: str
    last_retrain_at: datetime | None
    explanation: str


@dataclass(frozen=True)
class CooldownRecord:
    """What the cooldown remembers of one model: the last successful retrain and the running ones."""

    last_retrain_at: datetime | None = None
    running: dict[str, datetime] = field(default_factory=dict)
    """Flow run id -> when that retrain claimed its start."""

    def claimed(self, run_id: str, now: datetime) -> CooldownRecord:
        return replace(self, running={**self.running, run_id: self.running.get(run_id, now)})

    def succeeded(self, run_id: str) -> CooldownRecord:
        """The run's claim becomes the last retrain (by its start time); unknown runs change nothing."""
        started = self.running.get(run_id)
        if started is None:
            return self
        last = started if self.last_retrain_at is None else max(self.last_retrain_at, started)
        return CooldownRecord(last, {k: v for k, v in self.running.items() if k != run_id})

    def released(self, run_id: str) -> CooldownRecord:
        """A failed (or cancelled) retrain gives its claim back: it does not count as a retrain."""
        return replace(self, running={k: v for k, v in self.running.items() if k != run_id})

    def settled_by(self, ended: Mapping[str, bool]) -> CooldownRecord:
        """Settle the claims of runs that ended without settling them: run id -> whether it completed
        (its claim becomes the last retrain) or not (crashed, failed, cancelled, gone: released)."""
        record = self
        for run_id, completed in ended.items():
            record = record.succeeded(run_id) if completed else record.released(run_id)
        return record

    def running_since(self, cooldown_minutes: float, now: datetime, except_run: str = "") -> datetime | None:
        """Start of the oldest live claim of another run (claims older than the cooldown have lapsed)."""
        lease = timedelta(minutes=cooldown_minutes)
        live = [at for run, at in self.running.items() if run != except_run and now - at < lease]
        return min(live) if live else None

    def to_json(self) -> dict[str, Any]:
        return {
            "last_retrain_at": self.last_retrain_at.isoformat() if self.last_retrain_at else None,
            "running": {run: at.isoformat() for run, at in sorted(self.running.items())},
        }

    @classmethod
    def from_json(cls, stored: Any) -> CooldownRecord:
        """Read a stored record; a bare timestamp is the earlier format (the last retrain's start)."""
        if not stored:
            return cls()
        if isinstance(stored, str):
            return cls(datetime.fromisoformat(stored))
        last = stored.get("last_retrain_at")
        running = {run: datetime.fromisoformat(at) for run, at in (stored.get("running") or {}).items()}
        return cls(datetime.fromisoformat(last) if last else None, running)


def retrain_ready_at(last_retrain_at: datetime | None, cooldown_minutes: float) -> datetime | None:
    """When a drift-triggered retrain is allowed again (None: now, no retrain yet)."""
    return None if last_retrain_at is None else last_retrain_at + timedelta(minutes=cooldown_minutes)


def decide_retrain(
    reason: str, last_retrain_at: datetime | None, cooldown_minutes: float, now: datetime | None = None,
    running_since: datetime | None = None,
) -> RetrainGate:
    now = now or datetime.now(timezone.utc)
    if reason not in THROTTLED_REASONS:
        return RetrainGate(True, reason, last_retrain_at, f"retrain ({reason})")
    if running_since is not None:
        return RetrainGate(
            False, reason, last_retrain_at,
            f"skipped: another retrain of this model has been running since {running_since.isoformat()}",
        )
    if last_retrain_at is None:
        return RetrainGate(True, reason, last_retrain_at, f"retrain ({reason})")
    ready_at = retrain_ready_at(last_retrain_at, cooldown_minutes)
    if now < ready_at:
        wait = (ready_at - now).total_seconds()
        return RetrainGate(
            False, reason, last_retrain_at,
            f"skipped: last retrain started {last_retrain_at.isoformat()}, cooldown {cooldown_minutes:g} min ({wait:.0f} s left)",
        )
    return RetrainGate(True, reason, last_retrain_at, f"retrain ({reason}); cooldown since {last_retrain_at.isoformat()} has passed")


def claim(
    record: CooldownRecord, reason: str, run_id: str, cooldown_minutes: float, now: datetime | None = None,
    ended: Mapping[str, bool] | None = None,
) -> tuple[RetrainGate, CooldownRecord]:
    """Decide whether ``run_id`` may retrain and the record to write back in the same critical section:
    the claims of ``ended`` runs settled (see :meth:`CooldownRecord.settled_by`) and, if allowed, this
    run's claim added. A retry of the same run finds its own claim and passes again."""
    now = now or datetime.now(timezone.utc)
    record = record.settled_by({run: done for run, done in (ended or {}).items() if run != run_id})
    gate = decide_retrain(reason, record.last_retrain_at, cooldown_minutes, now, record.running_since(cooldown_minutes, now, run_id))
    return gate, (record.claimed(run_id, now) if gate.allowed else record)
