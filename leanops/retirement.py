"""Retiring a model: its schedules, triggers and batches stop acting on it; its history stays.

The state is one tag on the MLflow registered model, so every worker, the scheduler and the CLI read
the same answer, and it survives restarts. Nothing is deleted: registry versions, aliases and the
audit trail stay as they were, and ``reinstate`` undoes a retirement.
"""

from __future__ import annotations

import getpass
import json
from dataclasses import dataclass
from datetime import datetime, timezone

from leanops import registry
from leanops.settings import Settings

RETIRED_TAG = "leanops.retired"


@dataclass(frozen=True)
class Retirement:
    model_name: str
    reason: str
    retired_at: str
    """ISO 8601, UTC."""
    retired_by: str

    def to_tag(self) -> str:
        return json.dumps({"reason": self.reason, "at": self.retired_at, "by": self.retired_by}, sort_keys=True)

    @classmethod
    def from_tag(cls, model_name: str, value: str) -> "Retirement":
        try:
            fields = json.loads(value)
        except ValueError:  # a tag set by hand (e.g. "true" in the MLflow UI) still retires the model
            fields = {"reason": value}
        if not isinstance(fields, dict):
            fields = {"reason": value}
        return cls(model_name, str(fields.get("reason", "")), str(fields.get("at", "")), str(fields.get("by", "")))


def _who() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in some containers; the record is still useful without one
        return "unknown"


def retire(name: str, reason: str = "", by: str | None = None, settings: Settings | None = None) -> Retirement:
    """Mark ``name`` retired (idempotent: retiring again keeps the first record)."""
    existing = retirement(name, settings)
    if existing is not None:
        return existing
    record = Retirement(name, reason, datetime.now(timezone.utc).isoformat(timespec="seconds"), by or _who())
    registry.set_model_tag(name, RETIRED_TAG, record.to_tag(), settings)
    return record


def retirement(name: str, settings: Settings | None = None) -> Retirement | None:
    """The model's retirement record, or None while it is active (or not registered yet)."""
    value = registry.get_model_tag(name, RETIRED_TAG, settings)
    return None if value is None else Retirement.from_tag(name, value)


def is_retired(name: str, settings: Settings | None = None) -> bool:
    """True once ``retire`` was called and not undone. Raises when MLflow cannot be read: a flow must not
    read "unreachable" as "active" (nor as "retired")."""
    return retirement(name, settings) is not None


def reinstate(name: str, settings: Settings | None = None) -> bool:
    """Undo a retirement; True when the model was retired."""
    was_retired = is_retired(name, settings)
    registry.set_model_tag(name, RETIRED_TAG, None, settings)
    return was_retired
