"""The live gate of ``promote``: the run waits, paused like an approval, until the challenger has served
the spec's ``serving.min_requests`` on live traffic or ``serving.max_wait_seconds`` has passed, then adds
the live comparison to its decision. A person may Resume the paused run to decide at once on what there is."""

from __future__ import annotations

import math
import time

from prefect import pause_flow_run, runtime
from prefect.exceptions import FlowPauseTimeout

from leanops.results import PromotionDecision
from leanops.spec import Spec
from tasks.live import EvidenceWatch, gate_on_live_evidence, read_live_evidence


def wait_for_live_evidence(decision: PromotionDecision, model_spec: Spec) -> PromotionDecision:
    """Must run in the flow itself: a task cannot pause its flow run."""
    serving = model_spec.serving
    started = time.monotonic()
    evidence = read_live_evidence(model_spec, decision.challenger_version, decision.champion_version)
    if not evidence.enough:
        poll = 1 if serving.max_wait_seconds <= 300 else 5
        with EvidenceWatch(model_spec, decision, runtime.flow_run.id, interval=max(poll, 2)):
            try:
                pause_flow_run(timeout=math.ceil(serving.max_wait_seconds), poll_interval=poll)
            except FlowPauseTimeout:
                from flows.promote import _go_on_after_expired_pause

                _go_on_after_expired_pause("the live gate's wait ran out: deciding on the live evidence there is")
        evidence = read_live_evidence(model_spec, decision.challenger_version, decision.champion_version)
    return gate_on_live_evidence(model_spec, decision, evidence, time.monotonic() - started)
