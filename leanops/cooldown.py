"""Retrain cooldown: a storm of drift events must not start a storm of retrains."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

# Only these reasons are throttled: a schedule or a person asking for a retrain always gets one.
THROTTLED_REASONS = frozenset({"drift"})


@dataclass(frozen=True)
class RetrainGate:
    allowed: bool
    reason: str
    last_retrain_at: datetime | None
    explanation: str


def retrain_ready_at(last_retrain_at: datetime | None, cooldown_minutes: float) -> datetime | None:
    """When a drift-triggered retrain is allowed again (None: now, no retrain yet)."""
    return None if last_retrain_at is None else last_retrain_at + timedelta(minutes=cooldown_minutes)


def decide_retrain(reason: str, last_retrain_at: datetime | None, cooldown_minutes: float, now: datetime | None = None) -> RetrainGate:
    now = now or datetime.now(timezone.utc)
    if reason not in THROTTLED_REASONS or last_retrain_at is None:
        return RetrainGate(True, reason, last_retrain_at, f"retrain ({reason})")
    ready_at = retrain_ready_at(last_retrain_at, cooldown_minutes)
    if now < ready_at:
        wait = (ready_at - now).total_seconds()
        return RetrainGate(
            False, reason, last_retrain_at,
            f"skipped: last retrain started {last_retrain_at.isoformat()}, cooldown {cooldown_minutes:g} min ({wait:.0f} s left)",
        )
    return RetrainGate(True, reason, last_retrain_at, f"retrain ({reason}); cooldown since {last_retrain_at.isoformat()} has passed")
