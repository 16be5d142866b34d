"""Stage: fit the model and its baseline."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task

from leanops import modeling
from leanops.results import FeatureSet, TrainResult
from leanops.spec import Spec
from tasks._policies import CACHED


@task(**CACHED)
def fit_model(features: FeatureSet, spec: Spec, params: dict[str, Any] | None = None) -> TrainResult:
    result = modeling.fit_models(features, spec, params)
    get_run_logger().info("fitted XGBoost in %.1f s with %s", result.fit_seconds, result.params)
    return result
