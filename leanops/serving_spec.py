"""The ``serving:`` section of a model spec: how the online endpoint shares traffic between champion
and challenger (canary, shadow), what it logs, and whether ``promote`` waits for the live comparison."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ServingSpec(BaseModel):
    """How the online endpoint shares traffic between the champion and the challenger, what it logs, and
    whether ``promote`` waits for the live comparison. Shares are fractions of requests, chosen per request
    id (see ``leanops.canary``): the same id always goes the same way."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    canary_share: float = Field(default=0.0, ge=0.0, le=1.0)
    """Requests answered by the challenger instead of the champion."""
    shadow_share: float = Field(default=0.0, ge=0.0, le=1.0)
    """Requests the champion answers and the challenger also scores in the background (never returned)."""
    challenger_alias: str = Field(default="challenger", pattern=r"^[A-Za-z0-9_-]+$")
    live_gate: bool = False
    """``promote`` waits for the live comparison of challenger and champion and gates on it."""
    min_requests: int = Field(default=1000, ge=1)
    """Live gate: requests the challenger must have served (canary) or scored (shadow) before it decides."""
    max_wait_seconds: float = Field(default=3600.0, gt=0)
    """Live gate: how long ``promote`` waits for ``min_requests``; fewer by then is a rejection."""
    max_error_rate_increase: float = Field(default=0.01, ge=0.0, le=1.0)
    """Live gate: the challenger's error rate may exceed the champion's by at most this (absolute)."""
    max_latency_ratio: float = Field(default=1.5, gt=0)
    """Live gate: the challenger's p99 latency may be at most this multiple of the champion's."""
    max_prediction_shift: float = Field(default=0.5, ge=0.0)
    """Live gate: |mean prediction of challenger - champion| in standard deviations of the champion's."""
    log_sample_share: float = Field(default=0.05, ge=0.0, le=1.0)
    """Share of predictions logged as the uniform sample that drift-monitor checks."""
    low_confidence_below: float | None = Field(default=None, gt=0.0, le=1.0)
    """Classifiers: a prediction whose top class probability is under this is logged for inspection."""

    @model_validator(mode="after")
    def _check_shares(self) -> "ServingSpec":
        if self.canary_share + self.shadow_share > 1.0:
            raise ValueError(
                f"serving.canary_share ({self.canary_share}) + serving.shadow_share ({self.shadow_share}) exceed 1: "
                "a request is either answered by the challenger or shadowed, never both"
            )
        if self.live_gate and self.canary_share == 0 and self.shadow_share == 0:
            raise ValueError(
                "serving.live_gate needs live traffic for the challenger: set serving.canary_share or serving.shadow_share above 0"
            )
        return self
