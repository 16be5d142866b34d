"""The smoke test a promotion gate needs: does the version load as a server loads it and predict on
its own input example?"""

from __future__ import annotations

from leanops import promotion, registry
from leanops.errors import RegistryUnavailable
from leanops.registry import ModelVersionInfo
from leanops.results import SmokeTestResult
from leanops.settings import Settings
from leanops.spec import Spec


def smoke_test(info: ModelVersionInfo, spec: Spec, settings: Settings | None = None) -> SmokeTestResult:
    """Load the version as served and predict on its input example. A failure is a result, not an error:
    a model that cannot load or predict fails its promotion gate."""
    try:
        model = registry.load_pyfunc(info, settings)
        example = registry.load_input_example(info, settings)
    except RegistryUnavailable:
        raise  # an outage is no verdict on the model
    except Exception as exc:  # noqa: BLE001 - whatever breaks loading breaks serving too
        return SmokeTestResult(info.model_uri, False, 0, f"cannot load: {type(exc).__name__}: {exc}"[:500])
    if example is None or example.empty:
        return SmokeTestResult(info.model_uri, False, 0, "no input example was logged with the model")
    try:
        predictions = model.predict(example)
    except Exception as exc:  # noqa: BLE001 - a model that cannot predict fails its gate: that is the verdict
        return SmokeTestResult(info.model_uri, False, len(example), f"cannot predict: {type(exc).__name__}: {exc}"[:500])
    return promotion.check_predictions(info.model_uri, predictions, len(example), spec)
