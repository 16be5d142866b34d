"""Changing a model's spec while a champion trained on the old one is live.

The team drops two weather features (and their contract rules) and adds `month`, with a contract rule
for `year`. Until a new version wins, the live champion is still the one trained on the old features:
drift checks read the champion's own recorded spec, and the retrain and promotion compare the two
versions on the same rows, each model taking the raw columns it was trained on.
"""

from __future__ import annotations

import pytest
import yaml

from leanops import datasets, registry, storage
from support import spec_copy

pytestmark = pytest.mark.e2e

MODEL = "spec-change-e2e"
DROPPED = ["precip", "visib"]
ADDED = "month"
SMALL = {"model__params__n_estimators": 60, "drift__min_rows": 500}


def change_spec(path) -> None:
    """What a team edits: the feature list and the contract, in the same file, under the same name."""
    data = yaml.safe_load(path.read_text())
    data["features"] = [f for f in data["features"] if f["name"] not in DROPPED] + [{"name": ADDED, "kind": "numeric"}]
    for column in DROPPED:
        del data["contract"]["columns"][column]
    data["contract"]["columns"]["year"] = {"dtype": "integer", "min": 2013, "max": 2013}
    path.write_text(yaml.safe_dump(data))


@pytest.fixture(scope="module")
def live(stack, tmp_path_factory):
    """A champion (v1) trained and promoted on the first spec; then the spec file changes."""
    from flows.promote import promote
    from flows.retrain import retrain

    spec_path = spec_copy(tmp_path_factory.mktemp("spec-change"), MODEL, **SMALL)
    window = f"s3://{stack.s3_bucket}/windows/{MODEL}/2013-h1.parquet"
    storage.write_table(datasets.flights_sample(range(1, 7), rows_per_month=700, seed=11), window)
    july = f"s3://{stack.s3_bucket}/windows/{MODEL}/2013-07.parquet"
    storage.write_table(datasets.flights_sample([7], rows_per_month=1500, seed=12), july)
    first = retrain(spec=str(spec_path), batch_uri=window)
    assert promote(spec=str(spec_path), version=int(first.version)).action == "promoted"
    change_spec(spec_path)
    return {"spec": str(spec_path), "window": window, "july": july, "v1": first.version}


def recorded_features(version: str) -> set[str]:
    return set(registry.load_recorded_spec(registry.get_version(MODEL, version)).feature_names)


def test_drift_checks_the_live_champion_with_the_features_it_was_trained_on(live):
    from flows.drift_monitor import drift_monitor

    state = drift_monitor(spec=live["spec"], batch_uri=live["july"], return_state=True)

    assert state.is_completed(), state.message
    outcome = state.result()
    assert outcome.champion_version == live["v1"]
    checked = {f.name for f in outcome.drift.features}
    assert checked == recorded_features(live["v1"])
    assert set(DROPPED) <= checked and ADDED not in checked


def test_retrain_and_promote_compare_the_new_spec_with_the_old_champion_on_the_same_rows(live):
    from flows.promote import promote
    from flows.retrain import retrain

    registered = retrain(spec=live["spec"], batch_uri=live["window"], return_state=True)
    assert registered.is_completed(), registered.message
    challenger = registered.result()
    assert challenger.created and challenger.version != live["v1"]
    assert ADDED in recorded_features(challenger.version) and not set(DROPPED) & recorded_features(challenger.version)

    # Judged on its holdout and on a fresh labelled batch, against the champion of the old spec.
    decided = promote(spec=live["spec"], version=challenger.version, batch_uri=live["july"], return_state=True)

    assert decided.is_completed(), decided.message
    change = decided.result()
    assert change.action in ("promoted", "rejected") and change.champion_before == live["v1"]


def test_after_the_decision_drift_follows_whichever_version_is_champion(live):
    from flows.drift_monitor import drift_monitor

    outcome = drift_monitor(spec=live["spec"], batch_uri=live["july"])

    champion = registry.get_champion(MODEL).version
    assert outcome.champion_version == champion
    assert {f.name for f in outcome.drift.features} == recorded_features(champion)
