"""Which version answers a request: champion, or the challenger as canary, with or without a shadow score.

The choice is a pure function of the request's key (its prediction id, or a key the caller sends to keep
one customer on one version) and the spec's shares: no state, no random generator, the same on every
replica and in every test. A key is hashed with the model's name to a number in [0, 1); the first
``canary_share`` of that interval goes to the challenger, the next ``shadow_share`` is answered by the
champion and scored by the challenger in the background. The prediction log's sample uses the same hash
with another salt, so which requests are logged is independent of which version answered them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

from leanops.serving_spec import ServingSpec

Role = Literal["champion", "canary", "shadow"]


@dataclass(frozen=True)
class Route:
    answered_by: Literal["champion", "challenger"]
    shadow: bool = False
    """The challenger also scores this request, off the request path; its answer is never returned."""

    @property
    def role(self) -> Role:
        """How the answering version took part, for the per-version metrics."""
        return "canary" if self.answered_by == "challenger" else "champion"


CHAMPION = Route("champion")


def unit_interval(key: str, salt: str) -> float:
    """A number in [0, 1) that depends only on ``salt`` and ``key``, spread uniformly over keys."""
    digest = hashlib.blake2b(f"{salt}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def route(key: str, model: str, serving: ServingSpec, challenger_available: bool) -> Route:
    """Where the request with ``key`` goes. Without a challenger loaded every request is the champion's:
    a missing challenger must never fail or slow down a request."""
    if not challenger_available or (serving.canary_share == 0 and serving.shadow_share == 0):
        return CHAMPION
    point = unit_interval(key, f"route:{model}")
    if point < serving.canary_share:
        return Route("challenger")
    if point < serving.canary_share + serving.shadow_share:
        return Route("champion", shadow=True)
    return CHAMPION


def in_log_sample(prediction_id: str, model: str, share: float) -> bool:
    """Whether a prediction belongs to the uniform sample of the prediction log (independent of its route)."""
    return share > 0 and unit_interval(prediction_id, f"log-sample:{model}") < share
