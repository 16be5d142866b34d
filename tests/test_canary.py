"""Canary and shadow routing, live per-version counters and the live gate of a promotion (library only)."""

from __future__ import annotations

import uuid

import pytest
import yaml
from support import spec_copy

from leanops import canary, live, promotion_live
from leanops.errors import SpecError
from leanops.results import GateResult, PromotionDecision
from leanops.serving_spec import ServingSpec
from leanops.settings import Settings
from leanops.spec import load_spec, parse_spec


def test_canary_share_holds_and_routes_the_same_id_the_same_way():
    serving = ServingSpec(canary_share=0.1, shadow_share=0.2)
    ids = [str(uuid.uuid4()) for _ in range(20_000)]
    routes = [canary.route(i, "flights-delay", serving, challenger_available=True) for i in ids]
    canaried = sum(r.answered_by == "challenger" for r in routes) / len(ids)
    shadowed = sum(r.shadow for r in routes) / len(ids)
    assert abs(canaried - 0.1) < 0.01 and abs(shadowed - 0.2) < 0.01
    assert not any(r.shadow and r.answered_by == "challenger" for r in routes)
    again = [canary.route(i, "flights-delay", serving, challenger_available=True) for i in ids[:500]]
    assert again == routes[:500]
    # Another model splits the same ids independently: one customer is not the canary of every model.
    other = [canary.route(i, "churn", serving, True).answered_by for i in ids[:2000]]
    assert sum(a != r.answered_by for a, r in zip(other, routes[:2000])) > 100


def test_without_a_challenger_every_request_is_the_champions():
    serving = ServingSpec(canary_share=0.5, shadow_share=0.5)
    assert {canary.route(str(i), "m", serving, challenger_available=False) for i in range(300)} == {canary.CHAMPION}


def test_the_log_sample_is_independent_of_the_route():
    serving = ServingSpec(canary_share=0.5)
    ids = [str(uuid.uuid4()) for _ in range(20_000)]
    sampled = [i for i in ids if canary.in_log_sample(i, "m", 0.2)]
    assert abs(len(sampled) / len(ids) - 0.2) < 0.01
    canary_in_sample = sum(canary.route(i, "m", serving, True).answered_by == "challenger" for i in sampled) / len(sampled)
    assert abs(canary_in_sample - 0.5) < 0.03
    assert not any(canary.in_log_sample(i, "m", 0.0) for i in ids[:100])


@pytest.mark.parametrize("serving, field", [
    ({"canary_share": 0.7, "shadow_share": 0.5}, "exceed 1"),
    ({"canary_share": 1.5}, "serving.canary_share"),
    ({"shadow_share": -0.1}, "serving.shadow_share"),
    ({"live_gate": True}, "serving.live_gate needs live traffic"),
    ({"min_requests": 0}, "serving.min_requests"),
    ({"canary_shares": 0.1}, "serving.canary_shares"),
])
def test_a_bad_serving_section_is_a_spec_error_naming_it(spec, serving, field):
    data = spec.model_dump(mode="json")
    with pytest.raises(SpecError, match=field.replace(".", r"\.")):
        parse_spec({**data, "serving": serving})


def test_low_confidence_needs_a_classifier(spec):
    data = spec.model_dump(mode="json")
    data.update(task="regression", target={"name": "delay", "source": "dep_delay"}, metric={"primary": "rmse"})
    with pytest.raises(SpecError, match="low_confidence_below only fits a classifier"):
        parse_spec({**data, "serving": {"low_confidence_below": 0.6}})


def test_how_a_model_is_served_is_not_its_training_identity(tmp_path, spec):
    served = load_spec(spec_copy(tmp_path, "flights-delay", serving={"canary_share": 0.1, "live_gate": True}))
    assert served.serving.canary_share == 0.1
    assert served.spec_hash == spec.spec_hash


class Endpoint:
    """One endpoint process's Prometheus metrics, counted as the endpoint counts an answer."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter(live.REQUESTS, "", ["model", "version", "status"], registry=self.registry)
        self.latency = Histogram(live.LATENCY, "", ["model", "version"], registry=self.registry,
                                 buckets=(0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0))
        self.scores = Histogram(live.SCORES, "", ["model", "version", "alias", "role"], registry=self.registry,
                                buckets=tuple(round(0.05 * i, 2) for i in range(1, 21)))

    def answer(self, version: str, alias: str, latency: float, score: float | None, status: str = "200", model: str = "m") -> None:
        self.requests.labels(model, version, status).inc()
        if score is not None:
            self.latency.labels(model, version).observe(latency)
            self.scores.labels(model, version, alias, "answer").observe(score)

    def shadow(self, version: str, score: float, model: str = "m") -> None:
        self.scores.labels(model, version, "challenger", "shadow").observe(score)


def test_summaries_of_every_endpoint_process_add_up(tmp_path):
    settings = Settings(serving_live_root=str(tmp_path / "live"))
    first, second = Endpoint(), Endpoint()
    for _ in range(90):
        first.answer("3", "champion", 0.004, 0.2)
    for _ in range(9):
        second.answer("4", "challenger", 0.012, 0.3)
    second.answer("4", "challenger", 0.0, None, status="500")
    second.shadow("4", 0.45)
    first.answer("3", "champion", 0.004, 0.2, model="other")
    live.publish(first.registry, "m", "first", settings)
    live.publish(second.registry, "m", "second", settings)
    second.answer("4", "challenger", 0.012, 0.3)
    live.publish(second.registry, "m", "second", settings)  # replaces its own summary, never adds to it twice
    summary = live.read_model_summary("m", settings)
    assert summary.instances == 2
    champion = summary.of("3", "champion")
    assert (champion.requests, champion.errors, champion.latency_seconds.quantile(0.99)) == (90, 0, 0.005)
    canaried = summary.of("4", "canary")
    assert (canaried.requests, canaried.errors, canaried.scores.n) == (11, 1, 10)
    assert canaried.latency_seconds.quantile(0.5) == 0.015
    assert summary.of("4", "shadow").requests == 1
    assert summary.of("4", "canary", "shadow").scores.mean == pytest.approx((10 * 0.3 + 0.45) / 11)


def _decision() -> PromotionDecision:
    gate = GateResult("primary_improvement", "roc_auc", 0.71, 0.70, 0.70, passed=True)
    return PromotionDecision("m", "4", "3", "promote", (gate,), "roc_auc", "key")


def _summary(champion: list[tuple[float, float, bool]], challenger: list[tuple[float, float, bool]]) -> live.ModelLiveSummary:
    endpoint = Endpoint()
    for version, alias, rows in (("3", "champion", champion), ("4", "challenger", challenger)):
        for latency, value, error in rows:
            endpoint.answer(version, alias, latency, None if error else value, status="500" if error else "200")
    return live.ModelLiveSummary("m", 1, live.stats_from_metrics(endpoint.registry, "m"))
def test_too_little_live_traffic_rejects_and_says_how_much_there_was():
    serving = ServingSpec(canary_share=0.1, live_gate=True, min_requests=100)
    evidence = promotion_live.gather_evidence(_summary([(0.01, 0.3, False)] * 500, [(0.01, 0.3, False)] * 40), "4", "3", serving)
    decision = promotion_live.with_live_gates(_decision(), promotion_live.live_gates(evidence, serving, waited_seconds=60))
    assert decision.verdict == "reject"
    assert "live_requests[live]" in decision.reason and "40 of 100 live requests" in decision.reason
    assert "waiting 60 s" in decision.reason


def test_a_canary_that_errs_more_or_predicts_differently_is_rejected_on_that_evidence():
    serving = ServingSpec(canary_share=0.1, live_gate=True, min_requests=100)
    champion = [(0.01, v, False) for v in (0.2, 0.3, 0.4) * 200]
    healthy = [(0.012, v, False) for v in (0.25, 0.3, 0.35) * 40]
    evidence = promotion_live.gather_evidence(_summary(champion, healthy), "4", "3", serving)
    passed = promotion_live.with_live_gates(_decision(), promotion_live.live_gates(evidence, serving, 5))
    assert passed.verdict == "promote"
    assert [g.gate for g in passed.gates] == ["primary_improvement", "live_requests", "live_error_rate", "live_latency_p99", "live_prediction_shift"]

    erring = healthy[:100] + [(0.01, 0.3, True)] * 20
    evidence = promotion_live.gather_evidence(_summary(champion, erring), "4", "3", serving)
    failed = promotion_live.with_live_gates(_decision(), promotion_live.live_gates(evidence, serving, 5))
    assert failed.verdict == "reject" and [g.gate for g in failed.failed_gates] == ["live_error_rate"]

    shifted = [(0.01, 0.9, False)] * 120
    evidence = promotion_live.gather_evidence(_summary(champion, shifted), "4", "3", serving)
    failed = promotion_live.with_live_gates(_decision(), promotion_live.live_gates(evidence, serving, 5))
    assert [g.gate for g in failed.failed_gates] == ["live_prediction_shift"]
    assert "mean prediction 0.9 vs 0.3" in failed.reason  # the mean is exact (the histogram keeps the sum)

    slow = [(0.2, 0.3, False)] * 120
    evidence = promotion_live.gather_evidence(_summary(champion, slow), "4", "3", serving)
    failed = promotion_live.with_live_gates(_decision(), promotion_live.live_gates(evidence, serving, 5))
    assert [g.gate for g in failed.failed_gates] == ["live_latency_p99"]
