"""A retired model's automated runs log and step aside: its batches are marked processed, not failed;
drift and schedule retrains train nothing; a person can still retrain it by hand."""

from __future__ import annotations

import pytest

from leanops import datasets, manifest, registry, retirement, storage
from support import spec_copy

pytestmark = pytest.mark.e2e

MODEL = "retired-e2e"


@pytest.fixture(scope="module")
def retired(stack, tmp_path_factory):
    spec_path = spec_copy(tmp_path_factory.mktemp("retired"), MODEL, model__params__n_estimators=40)
    batch = f"s3://{stack.s3_bucket}/windows/{MODEL}/2013-h1.parquet"
    storage.write_table(datasets.flights_sample(range(1, 5), rows_per_month=500, seed=21), batch)
    retirement.retire(MODEL, reason="replaced by churn-v2")
    return {"spec": str(spec_path), "batch": batch}


def test_a_landed_batch_of_a_retired_model_is_skipped_and_marked_processed(retired):
    from flows.drift_monitor import drift_monitor

    state = drift_monitor(spec=retired["spec"], batch_uri=retired["batch"], return_state=True)

    assert state.is_completed(), state.message
    assert state.result().status == "retired"
    info = storage.stat(retired["batch"])
    assert manifest.read_mark(retired["batch"], info.etag).status == "retired"


@pytest.mark.parametrize("reason", ["drift", "schedule"])
def test_automated_retrains_of_a_retired_model_train_nothing(retired, reason):
    from flows.retrain import retrain

    state = retrain(spec=retired["spec"], batch_uri=retired["batch"], reason=reason, return_state=True)

    assert state.is_completed(), state.message
    assert state.result() is None
    assert registry.list_versions(MODEL) == []


def test_a_person_can_still_retrain_a_retired_model(retired):
    from flows.retrain import retrain

    registered = retrain(spec=retired["spec"], batch_uri=retired["batch"], reason="manual")

    assert registered.created and [v.version for v in registry.list_versions(MODEL)] == [registered.version]
