"""The live gate of promote on a real Prefect server: the run pauses like an approval until the
challenger has served the spec's minimum of live requests (read from the endpoints' summaries in the
object store), then decides on that evidence; with too little traffic in time it rejects, saying so."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from prefect import flow, tags
from support import environment

from leanops import live
from leanops.results import GateResult, PromotionDecision
from leanops.spec import Spec
from test_canary import Endpoint

pytestmark = pytest.mark.e2e


@flow(name="live-gate-test")
def gate(decision: PromotionDecision, model_spec: Spec) -> PromotionDecision:
    from flows.live_gate import wait_for_live_evidence

    return wait_for_live_evidence(decision, model_spec)


def _decision(model: str) -> PromotionDecision:
    return PromotionDecision(model, "4", "3", "promote", (GateResult("primary_improvement", "roc_auc", 0.71, 0.7, 0.7, True),), "roc_auc", "k")


def _run_in_thread(decision: PromotionDecision, spec: Spec, tag: str) -> tuple[threading.Thread, dict]:
    out: dict = {}

    def target() -> None:
        with tags(tag):
            out["state"] = gate(decision, spec, return_state=True)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, out


def _run_state(tag: str, wanted, timeout: float = 60.0):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[tag])))
            if runs and runs[0].state is not None and wanted(runs[0].state):
                return runs[0]
            time.sleep(0.3)
    raise AssertionError(f"no run tagged {tag} reached the wanted state within {timeout} s")


@pytest.fixture
def live_spec(spec, tmp_path, prefect_server):
    model = f"live-{uuid.uuid4().hex[:8]}"
    serving = spec.serving.model_copy(update={"canary_share": 0.1, "live_gate": True, "min_requests": 50, "max_wait_seconds": 120})
    with environment(LEANOPS_SERVING_LIVE_ROOT=str(tmp_path / "live")):
        yield spec.model_copy(update={"name": model, "serving": serving})


def test_the_run_waits_paused_until_the_canary_served_enough_then_decides_on_it(live_spec):
    tag = f"t-{uuid.uuid4().hex[:8]}"
    endpoint = Endpoint()
    for _ in range(200):
        endpoint.answer("3", "champion", 0.004, 0.3, model=live_spec.name)
    for _ in range(10):
        endpoint.answer("4", "challenger", 0.004, 0.3, model=live_spec.name)
    live.publish(endpoint.registry, live_spec.name, "replica-1", None)
    thread, out = _run_in_thread(_decision(live_spec.name), live_spec, tag)
    _run_state(tag, lambda state: state.is_paused())
    # Traffic goes on while the run waits; the endpoint's next summary carries the 50 canary answers.
    for _ in range(40):
        endpoint.answer("4", "challenger", 0.004, 0.31, model=live_spec.name)
    live.publish(endpoint.registry, live_spec.name, "replica-1", None)
    thread.join(90)
    assert not thread.is_alive(), "the watcher did not resume the run once the canary had served enough"
    decided = out["state"].result()
    assert decided.verdict == "promote"
    lines = {g.gate: g for g in decided.gates}
    assert lines["live_requests"].challenger == 50 and lines["live_requests"].passed
    assert lines["live_error_rate"].passed and lines["live_prediction_shift"].passed
    assert _run_state(tag, lambda state: state.is_completed(), 10).state.is_completed()


def test_too_little_traffic_in_time_is_a_rejection_that_names_the_evidence(live_spec):
    tag = f"t-{uuid.uuid4().hex[:8]}"
    model_spec = live_spec.model_copy(update={"serving": live_spec.serving.model_copy(update={"max_wait_seconds": 3})})
    endpoint = Endpoint()
    for _ in range(7):
        endpoint.answer("4", "challenger", 0.004, 0.3, model=model_spec.name)
    live.publish(endpoint.registry, model_spec.name, "replica-1", None)
    thread, out = _run_in_thread(_decision(model_spec.name), model_spec, tag)
    thread.join(90)
    decided = out["state"].result()
    assert decided.verdict == "reject"
    assert "7 of 50 live requests" in decided.reason and "not enough after waiting" in decided.reason
    # The wait running out is a decision, not a crash: the run ends Completed.
    assert out["state"].is_completed()
