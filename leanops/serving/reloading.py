"""Follow the aliases: when ``champion`` (or any alias the router keeps) moves, load the new version in
the background, prove it predicts, and only then swap it in.

Checks come from two sides: a lifecycle event (``request``, called by the web front end when Prefect
reports ``leanops.model.promoted`` / ``rolled_back``) and, as a fallback, a check of every alias at most
every ``serving_alias_check_seconds``. One thread does all loading, so two triggers for the same move
load it once. MLflow unreachable is an error to report and retry, never "no champion": the loaded
version keeps serving meanwhile.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass

from leanops import registry
from leanops.serving.batching import MicroBatcher
from leanops.serving.models import CHAMPION, ModelCache, ServedModel
from leanops.serving.row_scoring import checked_row_scorer
from leanops.serving.metrics import ServingMetrics
from leanops.settings import Settings
from leanops.spec import Spec

log = logging.getLogger(__name__)

POLL = "poll"


@dataclass(frozen=True)
class AliasState:
    """What the last check of one model found: the version of each alias, or why it could not tell."""

    versions: Mapping[str, str | None]
    checked_at: float
    error: str | None = None


class AliasFollower:
    def __init__(
        self,
        specs: Mapping[str, Spec],
        cache: ModelCache,
        metrics: ServingMetrics,
        settings: Settings,
        aliases: Callable[[Spec], tuple[str, ...]],
        executor: Executor,
    ):
        self.specs = dict(specs)
        self.cache = cache
        self.metrics = metrics
        self.settings = settings
        self._aliases = aliases
        self._executor = executor
        self._requests: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self._states: dict[str, AliasState] = {}
        self._thread: threading.Thread | None = None

    # --- what the front end asks ------------------------------------------------------------------

    def request(self, name: str, trigger: str) -> None:
        """Check this model's aliases soon (thread-safe; an unknown model is ignored)."""
        if name in self.specs:
            self._requests.put((name, trigger))

    def ready(self) -> tuple[bool, dict[str, str]]:
        """Ready once every model's champion was read and, where there is one, loaded; else why not, per model."""
        reasons: dict[str, str] = {}
        for name in self.specs:
            state = self._states.get(name)
            if state is None or CHAMPION not in state.versions:
                reasons[name] = (state.error if state and state.error else None) or "champion not read yet"
                continue
            version = state.versions[CHAMPION]
            served = self.cache.get(name, CHAMPION)
            # A loaded champion keeps the endpoint ready while its successor loads (it answers meanwhile).
            if version is not None and served is None:
                reasons[name] = f"champion v{version} not loaded" + (f": {state.error}" if state.error else " yet")
        return not reasons, reasons

    def state(self, name: str) -> AliasState | None:
        return self._states.get(name)

    # --- the background thread ----------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="alias-follower", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._requests.put(None)
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        self.check_all("start")
        next_poll = time.monotonic() + self.settings.serving_alias_check_seconds
        while True:
            try:
                item = self._requests.get(timeout=max(0.0, next_poll - time.monotonic()))
            except queue.Empty:
                self.check_all(POLL)
                next_poll = time.monotonic() + self.settings.serving_alias_check_seconds
                continue
            if item is None:
                return
            pending = {item[0]: item[1]}
            while True:  # several events for one model (a burst, a redelivery): one check
                try:
                    more = self._requests.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    return
                pending.setdefault(more[0], more[1])
            for name, trigger in pending.items():
                self.check(name, trigger)

    def check_all(self, trigger: str) -> None:
        for name in self.specs:
            self.check(name, trigger)

    def check(self, name: str, trigger: str) -> None:
        """Read each alias of one model and load whatever moved; failures are recorded, never raised."""
        spec = self.specs[name]
        versions: dict[str, str | None] = {}
        try:
            for alias in self._aliases(spec):
                versions[alias] = registry.alias_version(name, alias, settings=self.settings)
        except Exception as exc:  # noqa: BLE001 - MLflow unreachable: keep serving what is loaded, report, retry next time
            previous = self._states.get(name)
            self._states[name] = AliasState(previous.versions if previous else {}, time.time(), f"{type(exc).__name__}: {exc}"[:500])
            log.warning("cannot read the aliases of %s (%s): the loaded versions keep serving", name, exc)
            return
        errors = []
        for alias, version in versions.items():
            served = self.cache.get(name, alias)
            if version is None:
                if served is not None:
                    self.cache.drop(name, alias)
                    self.metrics.model_version.labels(name, alias, served.version).set(0)
                    log.info("%s has no %s any more: v%s no longer served", name, alias, served.version)
                continue
            if served is not None and served.version == version:
                continue
            try:
                fresh = self.load(spec, alias, version)
            except Exception as exc:  # noqa: BLE001 - a version that cannot load or predict is not swapped in; the old one serves
                self.metrics.reloads.labels(name, alias, trigger, "failed").inc()
                errors.append(f"{alias} v{version}: {type(exc).__name__}: {exc}"[:500])
                log.exception("cannot load %s %s v%s: v%s keeps serving", name, alias, version, served.version if served else "-")
                continue
            previous = self.cache.swap(fresh)
            self.metrics.served(name, alias, version, previous.version if previous else None)
            self.metrics.reloads.labels(name, alias, trigger, "loaded").inc()
            log.info("%s %s: now v%s (was %s; trigger %s)", name, alias, version, f"v{previous.version}" if previous else "none", trigger)
        self._states[name] = AliasState(versions, time.time(), "; ".join(errors) or None)

    def load(self, spec: Spec, alias: str, version: str) -> ServedModel:
        """Load one version and run it once on its input example before it may answer anyone; use the fast
        path (``row_scoring``) only where it answers exactly as pyfunc on that example and its probes."""
        info = registry.get_version(spec.name, version, settings=self.settings)
        pyfunc = registry.load_pyfunc(info, settings=self.settings)
        plain = ServedModel(spec.name, alias, version, spec, pyfunc)
        example = registry.load_input_example(info, settings=self.settings)
        rows = [] if example is None else example.head(2).to_dict(orient="records")
        if rows:
            plain.pyfunc_rows(rows)
        scorer, why = checked_row_scorer(pyfunc, plain.pyfunc_rows, rows)
        log.info("%s v%s: %s", spec.name, version, why)

        def count(path: str, n_rows: int) -> None:
            self.metrics.scored_rows.labels(spec.name, version, path).inc(n_rows)

        served = ServedModel(spec.name, alias, version, spec, pyfunc, scorer=scorer, on_scored=count)
        return ServedModel(
            spec.name, alias, version, spec, pyfunc, scorer=scorer, on_scored=count,
            batcher=MicroBatcher(served.predict_rows, self._executor, self.settings.serving_max_batch_rows),
        )
