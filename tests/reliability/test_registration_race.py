"""Two retrains of one model on the same data at once (retrain/weekly and retrain/on-drift have separate
concurrency limits) register one version: registration takes turns under the model's lock."""

from __future__ import annotations

import threading
import uuid

import pytest

from leanops import datasets, registry, storage
from support import spec_copy

pytestmark = pytest.mark.e2e


def test_two_retrains_of_the_same_data_at_once_register_one_version(stack, tmp_path):
    from flows.retrain import retrain

    name = f"race-{uuid.uuid4().hex[:6]}"
    spec = str(spec_copy(tmp_path, name, model__params__n_estimators=30))
    uri = f"s3://{stack.s3_bucket}/training/{name}/2013-h1.parquet"
    storage.write_table(datasets.flights_sample(range(1, 7), rows_per_month=400, seed=3), uri)
    results: dict[str, object] = {}
    start = threading.Barrier(2)

    def run(reason: str) -> None:
        start.wait()
        results[reason] = retrain(spec=spec, batch_uri=uri, reason=reason, return_state=True)

    threads = [threading.Thread(target=run, args=(reason,)) for reason in ("schedule", "manual")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)

    registrations = [state.result() for state in results.values()]
    assert [v.version for v in registry.list_versions(name)] == ["1"]
    assert sorted(r.created for r in registrations) == [False, True]
    assert {r.version for r in registrations} == {"1"}
