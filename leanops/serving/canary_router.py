"""Canary and shadow on the endpoint: the ``Router`` of ``leanops.serving.extensions`` that follows each
spec's ``serving`` section, and the publisher of the live per-version summaries ``promote`` reads.

Which version answers is ``leanops.canary.route``: a pure function of the request's key, the same on
every replica. The challenger (``serving.challenger_alias``) is kept loaded only for specs that give it
a share; while it is not loaded (none registered yet, or still loading) every request is the champion's.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Mapping

from leanops import canary, live
from leanops.serving.extensions import Route
from leanops.serving.models import CHAMPION, ServedModel
from leanops.settings import Settings
from leanops.spec import Spec


def shares_traffic(spec: Spec) -> bool:
    return spec.serving.canary_share > 0 or spec.serving.shadow_share > 0


class CanaryRouter:
    def __init__(self, specs: Mapping[str, Spec], registry, settings: Settings) -> None:
        """``registry``: the endpoint's Prometheus registry, summarised for ``promote`` every
        ``serving_live_publish_seconds`` (only models that share traffic with a challenger)."""
        shared = sorted(name for name, spec in specs.items() if shares_traffic(spec))
        self.publisher = live.SummaryPublisher(registry, shared, settings.serving_live_publish_seconds, settings) if shared else None
        self._started = threading.Event()

    def aliases(self, spec: Spec) -> tuple[str, ...]:
        return (CHAMPION, spec.serving.challenger_alias) if shares_traffic(spec) else (CHAMPION,)

    def route(self, spec: Spec, loaded: Mapping[str, ServedModel], key: str | None = None) -> Route:
        """``key``: what keeps a caller on one version (e.g. a customer id); without it each request is drawn anew."""
        if self.publisher is not None and not self._started.is_set():
            self._started.set()
            self.publisher.start()  # on first use: a Lambda container publishes only while it is thawed anyway
        if not shares_traffic(spec):
            return Route(CHAMPION)
        alias = spec.serving.challenger_alias
        chosen = canary.route(key or uuid.uuid4().hex, spec.name, spec.serving, challenger_available=alias in loaded)
        if chosen.answered_by == "challenger":
            return Route(alias)
        return Route(CHAMPION, shadow=(alias,) if chosen.shadow else ())

    def close(self) -> None:
        """Write the last summary (a short-lived process still counts)."""
        if self.publisher is not None:
            self.publisher.stop()
