"""Which models' scheduled retrains are due: one scheduler run honours every spec's own cron.

Pure functions of the specs and the time. A due retrain is named by its model and the cron time it
belongs to, so starting it twice (two scheduler runs seeing the same due time) can be made a no-op
by whoever starts runs: the idempotency key is the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterable
from zoneinfo import ZoneInfo

from cronsim import CronSim

from leanops.errors import SpecError
from leanops.spec import ScheduleSpec, Spec, load_spec


@dataclass(frozen=True)
class DueRetrain:
    model: str
    spec_ref: str
    """What the retrain flow's ``spec`` parameter gets: the spec's name in the specs folder."""
    due_at: datetime
    """The cron time this retrain belongs to, in UTC."""

    @property
    def idempotency_key(self) -> str:
        return f"leanops-schedule-{self.model}-{self.due_at.strftime('%Y%m%dT%H%MZ')}"


@dataclass(frozen=True)
class SpecFolder:
    """Every spec of a folder that loads, and a readable error for each one that does not."""

    specs: dict[str, Spec]
    """Spec reference (file name without .yaml) -> spec."""
    errors: dict[str, str]


def last_fire_time(schedule: ScheduleSpec, now: datetime) -> datetime | None:
    """The latest time at or before ``now`` the schedule's cron names, in UTC; None without a cron."""
    if schedule.cron is None:
        return None
    local_now = now.astimezone(ZoneInfo(schedule.timezone))
    # Searching backwards from a time skips the time itself: start one second later, keep the first <= now.
    for fire in CronSim(schedule.cron, local_now.replace(microsecond=0) + timedelta(seconds=1), reverse=True):
        if fire <= local_now:
            return fire.astimezone(timezone.utc)
    return None  # pragma: no cover - a valid cron always has an earlier time


def due_retrains(specs: dict[str, Spec], now: datetime, lookback: timedelta) -> list[DueRetrain]:
    """Models whose last cron time falls in ``(now - lookback, now]``, one due retrain each.

    The lookback is how late a retrain may still start: a scheduler run that was delayed or missed is
    caught up by the next one, while a cron time older than that (a spec added later, a long outage)
    waits for its next time rather than firing at once."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    due = []
    for ref, spec in sorted(specs.items()):
        fired = last_fire_time(spec.schedule, now)
        if fired is not None and now - lookback < fired <= now:
            due.append(DueRetrain(spec.name, ref, fired))
    return due


def read_spec_folder(folder: Path) -> SpecFolder:
    """Load every ``*.yaml`` spec in ``folder``. One broken spec must not stop the others' schedules."""
    if not folder.is_dir():
        raise SpecError(f"no specs folder at {folder} (set LEANOPS_SPECS_DIR, or run from the project folder)")
    specs, errors = {}, {}
    for path in sorted(folder.glob("*.yaml")):
        try:
            specs[path.stem] = load_spec(path)
        except SpecError as exc:
            errors[path.stem] = str(exc)
    return SpecFolder(specs, errors)


def unreadable_specs_error(errors: dict[str, str]) -> SpecError:
    listed = "\n".join(f"- {ref}: {message}" for ref, message in sorted(errors.items()))
    return SpecError(f"{len(errors)} spec(s) could not be read, so their models were not scheduled:\n{listed}")


@dataclass(frozen=True)
class SchedulePlan:
    """One scheduler pass: the retrains to start, the due ones of retired models, the specs that failed to load."""

    due: tuple[DueRetrain, ...]
    retired: tuple[DueRetrain, ...] = ()
    unreadable: dict[str, str] | None = None

    def summary(self) -> str:
        parts = [f"{len(self.due)} retrain(s) due" + (f": {', '.join(d.model for d in self.due)}" if self.due else "")]
        if self.retired:
            parts.append(f"skipped (retired): {', '.join(d.model for d in self.retired)}")
        if self.unreadable:
            parts.append(f"unreadable specs: {', '.join(sorted(self.unreadable))}")
        return "; ".join(parts)


def plan(due: Iterable[DueRetrain], retired_models: set[str], unreadable: dict[str, str]) -> SchedulePlan:
    due = list(due)
    return SchedulePlan(
        due=tuple(d for d in due if d.model not in retired_models),
        retired=tuple(d for d in due if d.model in retired_models),
        unreadable=dict(unreadable) or None,
    )
