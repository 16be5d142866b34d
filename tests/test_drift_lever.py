"""The flights spec's drift settings keep quiet months quiet without going blind (bench/drift_lever.py
has the month-by-month measurements behind them).

Given the champion the demo has by September (trained on March-August; its reference is the
training part of that window, as the registry stores it) and September's flights, which the spec
reads as quiet, a real shift injected into September is still a drift of the batch:
- one large carrier's share doubled (e.g. UA from 17% to 34% of the flights);
- the temperature moved by two standard deviations of the reference.
Measured limit: doubling a carrier that flies 5% of the flights (9E) scores 0.07-0.09 on carrier,
under the categorical threshold of 0.1, which sits just above what `dest` scores between quiet months.
"""

from __future__ import annotations

import pandas as pd
import pytest

from leanops import datasets, drift, registration
from leanops.features import build_feature_set, model_input_columns
from leanops.features import feature_frame as spec_feature_frame
from leanops.results import Batch


def feature_frame(raw: pd.DataFrame, spec) -> pd.DataFrame:
    """What drift-monitor compares: the spec's features of the raw model inputs (weekday derived)."""
    return spec_feature_frame(raw[model_input_columns(spec)], spec)


@pytest.fixture(scope="module")
def reference_raw(spec) -> pd.DataFrame:
    months = list(range(3, 9))
    features = build_feature_set(Batch("window", "march-august", datasets.flights(months)), spec)
    return registration.reference_sample(features, spec)


@pytest.fixture(scope="module")
def reference(reference_raw, spec) -> pd.DataFrame:
    return feature_frame(reference_raw, spec)


@pytest.fixture(scope="module")
def september() -> pd.DataFrame:
    return datasets.flights([9])


def double_share(raw: pd.DataFrame, carrier: str) -> pd.DataFrame:
    """The same number of flights, with twice the share of ``carrier`` (its flights drawn again)."""
    mine, others = raw[raw["carrier"] == carrier], raw[raw["carrier"] != carrier]
    doubled = mine.sample(n=2 * len(mine), replace=True, random_state=1)
    return pd.concat([doubled, others.sample(n=len(raw) - len(doubled), random_state=1)], ignore_index=True)


def test_september_is_quiet_against_the_march_august_champion(reference, september, spec):
    result = drift.compute_drift(reference, feature_frame(september, spec), spec)

    assert result.status == "ok" and result.drifted_features == ()
    temp = next(f for f in result.features if f.name == "temp")
    assert 0.3 < temp.score < temp.threshold  # the season still moves the weather, under a material shift


@pytest.mark.parametrize("carrier", ["UA", "B6", "EV", "DL"])
def test_a_large_carriers_share_doubled_is_a_drift(reference, september, spec, carrier):
    shifted = double_share(september, carrier)
    assert (shifted["carrier"] == carrier).mean() == pytest.approx(2 * (september["carrier"] == carrier).mean(), abs=0.001)

    result = drift.compute_drift(reference, feature_frame(shifted, spec), spec)

    assert result.status == "drift" and result.dataset_drift
    assert "carrier" in result.drifted_features


def test_temperature_moved_by_two_reference_stds_is_a_drift(reference, reference_raw, september, spec):
    shifted = september.assign(temp=september["temp"] + 2 * reference_raw["temp"].std())

    result = drift.compute_drift(reference, feature_frame(shifted, spec), spec)

    assert result.status == "drift" and result.dataset_drift
    assert result.drifted_features == ("temp",)
