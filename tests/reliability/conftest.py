"""The fault-injection suite's table (scenario, faults injected, survived, data lost, time to recover),
printed after the run from what each scenario recorded, and the one small champion its scenarios share.

Run alone: ``.venv/bin/python -m pytest tests/reliability -q``."""

from __future__ import annotations

import pytest

from reliability.table import Outcome, attach


@pytest.fixture
def record(request):
    """A row of the table for this test. Set its fields as the test proves them: a row left unproven
    (the test failed before setting ``survived``) prints as not survived."""
    outcomes: list[Outcome] = []

    def start(scenario: str, faults: str) -> Outcome:
        outcome = Outcome(scenario, faults)
        outcomes.append(outcome)
        return outcome

    yield start
    attach(request.node, outcomes)


@pytest.fixture(scope="session")
def small_champion(stack, tmp_path_factory):
    """A small champion (2,400 flights, 30 trees) trained by the real retrain flow; its spec lives in a
    specs folder under its own name. Scenarios only read it: each asserts it is unchanged. Its reference
    (~1,600 training rows) is under the spec's drift.min_rows, so the copy lowers that to 1,000: a check
    with fewer rows on either side is only "inconclusive"."""
    from flows.retrain import retrain
    from leanops import datasets, registry, storage
    from support import spec_copy

    name = "reliability-champion"
    specs = tmp_path_factory.mktemp("reliability-specs")
    spec_path = spec_copy(specs, name, model__params__n_estimators=30, drift__min_rows=1000)
    training = datasets.flights_sample(range(1, 7), rows_per_month=400, seed=3)
    uri = storage.write_table(training, f"s3://{stack.s3_bucket}/training/{name}/2013-h1.parquet")
    registration = retrain(spec=str(spec_path), batch_uri=uri)
    registry.set_alias(name, registry.CHAMPION, registration.version)
    return {"name": name, "spec_path": spec_path, "specs": specs, "version": registration.version}
