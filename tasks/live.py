"""Stage: the live gate of a promotion. Read how the challenger did on live traffic beside the champion
(every endpoint's summary in the object store), add it to the decision's ledger, and watch for enough
evidence while the promote run is paused."""

from __future__ import annotations

import contextvars
import threading
from uuid import UUID

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from leanops import live, promotion_live
from leanops.promotion_live import LiveEvidence
from leanops.results import PromotionDecision
from leanops.spec import Spec
from tasks._policies import RETRY_IO


def _evidence(spec: Spec, challenger_version: str, champion_version: str | None) -> LiveEvidence:
    summary = live.read_model_summary(spec.name)
    return promotion_live.gather_evidence(summary, challenger_version, champion_version, spec.serving)


@task(cache_policy=NO_CACHE, **RETRY_IO)
def read_live_evidence(spec: Spec, challenger_version: str, champion_version: str | None) -> LiveEvidence:
    evidence = _evidence(spec, challenger_version, champion_version)
    get_run_logger().info("live evidence: %s", evidence.describe())
    return evidence


@task(cache_policy=NO_CACHE)
def gate_on_live_evidence(spec: Spec, decision: PromotionDecision, evidence: LiveEvidence, waited_seconds: float) -> PromotionDecision:
    decided = promotion_live.with_live_gates(decision, promotion_live.live_gates(evidence, spec.serving, waited_seconds))
    create_table_artifact(key=f"{spec.name}-promotion-ledger", table=decided.table(),
                          description=f"Gates for v{decided.challenger_version}, live traffic included")
    get_run_logger().info("with the live gate: %s: %s", decided.verdict, decided.reason)
    return decided


class EvidenceWatch:
    """While the run is paused: every ``interval`` seconds read the live evidence and, once it is enough,
    resume the run (as a person's Resume would). Not a task: it runs beside the paused flow."""

    def __init__(self, spec: Spec, decision: PromotionDecision, flow_run_id: UUID, interval: float) -> None:
        self._spec, self._decision, self._run_id, self._interval = spec, decision, flow_run_id, interval
        self._stop = threading.Event()
        self._context = contextvars.copy_context()  # the run's Prefect settings (API URL) in the thread
        self._thread = threading.Thread(target=lambda: self._context.run(self._watch), name="live-gate-watch", daemon=True)
        self.last_error: str | None = None

    def _watch(self) -> None:
        from prefect.client.orchestration import get_client

        while not self._stop.wait(self._interval):
            try:
                evidence = _evidence(self._spec, self._decision.challenger_version, self._decision.champion_version)
                if not evidence.enough:
                    continue
                with get_client(sync_client=True) as client:
                    answer = client.resume_flow_run(self._run_id)
                # Refused while the pause is still being set up: the next round tries again.
                if answer.status.value == "ACCEPT":
                    return
            except Exception as exc:  # noqa: BLE001 - an outage while watching only delays the decision; the pause's timeout bounds it
                self.last_error = f"{type(exc).__name__}: {exc}"

    def __enter__(self) -> "EvidenceWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(self._interval + 30)
