"""A burst of small objects under a model's prefix against a real Prefect server, MLflow server and
moto's S3 (issue 10, finding 10): the retrain learns from the time window, not from the burst, and a
training set under half the champion's is refused unless a person allows it."""

from __future__ import annotations

import re

import pytest

from leanops import datasets, registry, storage
from leanops.errors import GateFailed
from support import artifacts_of, spec_copy

pytestmark = pytest.mark.e2e

MODEL = "window-e2e"
MONTHS = range(1, 7)
ROWS_PER_MONTH = 1500


@pytest.fixture(scope="module")
def landed(stack, tmp_path_factory):
    """Six monthly batches of January-June, then 50 small July objects at once in a nested folder."""
    prefix = f"s3://{stack.s3_bucket}/windows/{MODEL}/"
    months = datasets.flights_sample(MONTHS, rows_per_month=ROWS_PER_MONTH, seed=21)
    for month, part in months.groupby("month"):
        storage.write_table(part.reset_index(drop=True), f"{prefix}2013-{month:02d}.parquet")
    burst = datasets.flights_sample([7], rows_per_month=50 * 562, seed=22)
    parts = [f"{prefix}backfill/part-{i:03d}.parquet" for i in range(50)]
    for i, uri in enumerate(parts):
        storage.write_table(burst.iloc[i * 562:(i + 1) * 562].reset_index(drop=True), uri)
    spec_path = spec_copy(
        tmp_path_factory.mktemp("window"), MODEL, retrain_window__prefix=f"windows/{MODEL}/",
        retrain_window__min_rows=1000, model__params__n_estimators=60,
    )
    return {"prefix": prefix, "spec_path": spec_path, "burst": parts, "api": stack.resolved_prefect_api_url}


def test_a_retrain_after_a_burst_trains_on_the_time_window(landed):
    from flows.retrain import retrain

    state = retrain(spec=str(landed["spec_path"]), return_state=True)
    result = state.result()
    assert result.created
    version = registry.get_version(MODEL, result.version)
    sources = version.tags["leanops.data_sources"].split(",")
    assert [s.rsplit("/", 1)[-1] for s in sources] == [f"2013-{m:02d}.parquet" for m in MONTHS]
    rows = sum(value for name, value in version.metrics.items() if name.startswith("rows_"))
    assert rows == len(MONTHS) * ROWS_PER_MONTH
    # The UI showed the window being read, object by object, to the end (issue 13).
    loading = artifacts_of(landed["api"], state.state_details.flow_run_id)[f"{MODEL}-window-loading"]
    assert loading["type"] == "progress" and loading["data"] == 100.0
    assert re.search(r"read (\d+) of \1 objects, [\d,]+ rows$", loading["description"]), loading["description"]


def test_a_training_set_under_half_the_champions_registers_only_when_allowed(landed):
    from flows.retrain import retrain

    champion = registry.list_versions(MODEL)[-1]
    registry.set_alias(MODEL, registry.CHAMPION, champion.version)
    versions_before = [v.version for v in registry.list_versions(MODEL)]

    state = retrain(spec=str(landed["spec_path"]), batch_uri=landed["burst"][0], return_state=True)
    assert state.is_failed()
    with pytest.raises(GateFailed, match=f"champion v{champion.version} trained on .*fewer than half.*allow_small=True"):
        state.result()
    assert [v.version for v in registry.list_versions(MODEL)] == versions_before

    allowed = retrain(spec=str(landed["spec_path"]), batch_uri=landed["burst"][0], allow_small=True)
    assert allowed.created and allowed.version not in versions_before
