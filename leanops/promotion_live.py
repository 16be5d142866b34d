"""The live gate of a promotion: how the challenger did on real traffic beside the champion.

Pure: it reads a :class:`~leanops.live.ModelLiveSummary` (every endpoint's counters, added up) and the
spec's ``serving`` limits, and returns ledger lines (``GateResult``) that join the offline gates of the
decision, so the ledger, the reason and the Slack message say on which evidence it was decided.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from leanops.live import ModelLiveSummary, VersionStats
from leanops.results import GateResult, PromotionDecision
from leanops.serving_spec import ServingSpec

DATASET = "live"


@dataclass(frozen=True)
class LiveEvidence:
    challenger_version: str
    champion_version: str | None
    challenger: VersionStats
    champion: VersionStats
    instances: int
    min_requests: int

    @property
    def enough(self) -> bool:
        return self.challenger.requests >= self.min_requests

    def describe(self) -> str:
        champion = f"champion v{self.champion_version}: {self.champion.requests}" if self.champion_version else "no champion"
        return (f"challenger v{self.challenger_version}: {self.challenger.requests} of {self.min_requests} live requests; "
                f"{champion} (from {self.instances} endpoint process(es))")


def gather_evidence(summary: ModelLiveSummary, challenger_version: str, champion_version: str | None, serving: ServingSpec) -> LiveEvidence:
    """The challenger's canary answers and shadow scores, beside everything the champion answered."""
    challenger = summary.of(challenger_version, "canary", "shadow")
    champion = summary.of(champion_version, "champion") if champion_version else VersionStats()
    return LiveEvidence(challenger_version, champion_version, challenger, champion, summary.instances, serving.min_requests)


def live_gates(evidence: LiveEvidence, serving: ServingSpec, waited_seconds: float) -> tuple[GateResult, ...]:
    ours, theirs = evidence.challenger, evidence.champion
    requests = GateResult(
        "live_requests", "requests", float(ours.requests), float(theirs.requests), float(evidence.min_requests),
        passed=evidence.enough, dataset=DATASET,
        detail=evidence.describe() + ("" if evidence.enough else f"; not enough after waiting {waited_seconds:.0f} s"),
    )
    if not evidence.enough:
        return (requests,)
    if not theirs.requests:
        why = "no live traffic of the champion to compare with"
        return (requests, *(GateResult(g, m, None, None, None, passed=True, skipped=True, detail=why, dataset=DATASET)
                            for g, m in (("live_error_rate", "error_rate"), ("live_latency_p99", "latency_p99_ms"),
                                         ("live_prediction_shift", "prediction_shift"))))
    return (requests, _error_gate(ours, theirs, serving), _latency_gate(ours, theirs, serving), _shift_gate(ours, theirs, serving))


def _error_gate(ours: VersionStats, theirs: VersionStats, serving: ServingSpec) -> GateResult:
    limit = theirs.error_rate + serving.max_error_rate_increase
    return GateResult("live_error_rate", "error_rate", ours.error_rate, theirs.error_rate, limit, passed=ours.error_rate <= limit,
                      dataset=DATASET, detail=f"{ours.errors} errors in {ours.requests} requests vs {theirs.errors} in {theirs.requests}")


def _latency_gate(ours: VersionStats, theirs: VersionStats, serving: ServingSpec) -> GateResult:
    mine, champion = ours.latency_seconds.quantile(0.99), theirs.latency_seconds.quantile(0.99)
    if mine is None or champion is None:
        return GateResult("live_latency_p99", "latency_p99_ms", None, None, None, passed=True, skipped=True, dataset=DATASET,
                          detail="no answer latency on one side (shadow scores are off the request path)")
    mine, champion = mine * 1000, champion * 1000
    limit = champion * serving.max_latency_ratio
    return GateResult("live_latency_p99", "latency_p99_ms", mine, champion, limit, passed=mine <= limit, dataset=DATASET,
                      detail=f"p99 at most {mine:g} ms vs {champion:g} ms (histogram bucket bounds); limit x{serving.max_latency_ratio:g}")


def _shift_gate(ours: VersionStats, theirs: VersionStats, serving: ServingSpec) -> GateResult:
    mean, reference, spread = ours.scores.mean, theirs.scores.mean, theirs.scores.std
    if mean is None or reference is None or spread is None:
        return GateResult("live_prediction_shift", "prediction_shift", None, None, serving.max_prediction_shift, passed=True,
                          skipped=True, dataset=DATASET,
                          detail="no spread of the champion's predictions to compare with (too few, or beyond the histogram's range)")
    shift = abs(mean - reference) / max(spread, 1e-12)
    return GateResult(
        "live_prediction_shift", "prediction_shift", shift, 0.0, serving.max_prediction_shift,
        passed=shift <= serving.max_prediction_shift, dataset=DATASET,
        detail=f"mean prediction {mean:.4g} vs {reference:.4g} (champion std {spread:.4g})",
    )


def with_live_gates(decision: PromotionDecision, gates: tuple[GateResult, ...]) -> PromotionDecision:
    """The decision with the live lines added; any live line that fails turns it into a rejection."""
    failed = any(not g.passed and not g.skipped for g in gates)
    return replace(decision, gates=(*decision.gates, *gates), verdict="reject" if failed else decision.verdict)
