"""What the scenarios share: pointing leanops at a proxy, and reading what a check left behind."""

from __future__ import annotations

from leanops import drift, manifest, monitoring, storage
from support import environment


def s3_through(proxy):
    """Every S3 call of this process (the flows run in it) goes through ``proxy``."""
    return environment(LEANOPS_S3_ENDPOINT_URL=proxy.url)


def processed_mark(uri: str):
    """The manifest's mark of the object at ``uri`` as it is now, or None if no check marked it."""
    return manifest.read_mark(uri, manifest.identity_of(storage.stat(uri)))


def drift_monitor(**parameters):
    """One drift-monitor run in this process; its final state (the run's error stays in it)."""
    from flows.drift_monitor import drift_monitor as flow

    return flow(**parameters, return_state=True)


def history_statuses(model: str, uri: str) -> list[str]:
    """The verdicts the model's drift history holds for ``uri`` (empty: no check recorded it)."""
    history = drift.read_history(monitoring.history_uri(model))
    return list(history.loc[history["batch_uri"] == uri, "status"])
