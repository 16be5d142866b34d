"""Scenario 1: the S3 endpoint becomes unreachable while drift-monitor loads its batch.

moto keeps its objects in memory, so it is cut off by a TCP proxy in front of it (tests/reliability/proxy.py),
never stopped and never mocked: boto3 really fails to connect. Within load_batch's retry window (botocore's
own attempts, then the task's 1, 2, 4 s) the run completes; past it, the run fails with the outage named, the
batch stays unmarked for the reconciliation, and a rerun once S3 is back checks it."""

from __future__ import annotations

import time

import pytest

from reliability.faults import drift_monitor, history_statuses, processed_mark, s3_through
from leanops import datasets, registry, storage
from leanops.errors import TransientIOError
from reliability.proxy import TcpProxy
from support import prefect_request, wait_for

pytestmark = pytest.mark.e2e

# botocore tries a request 3 times (storage._boto_config): 4 refusals means the first task attempt
# failed as a whole and load_batch's own retry got through.
REFUSALS_WITHIN_RETRY_WINDOW = 4


@pytest.fixture
def s3_proxy(stack):
    proxy = TcpProxy(stack.host, stack.s3_port)
    yield proxy
    proxy.close()


def load_batch_attempts(stack, flow_run_id) -> int:
    """How many times the run's load_batch task ran, once the server has its final state."""
    body = {"flow_runs": {"id": {"any_": [str(flow_run_id)]}}, "task_runs": {"name": {"like_": "load_batch"}}}
    url = f"{stack.resolved_prefect_api_url}/task_runs/filter"

    def settled():
        runs = prefect_request("POST", url, json=body).json()
        return runs if runs and all(r["state_type"] == "COMPLETED" for r in runs) else None

    (run,) = wait_for(settled, f"the load_batch task run of {flow_run_id} to complete")
    return run["run_count"]


def land(stack, name: str, key: str) -> str:
    return storage.write_table(datasets.flights_sample([8], rows_per_month=2500, seed=11), f"s3://{stack.s3_bucket}/checks/{name}/{key}")




def test_s3_back_within_the_retry_window_the_check_completes(small_champion, stack, s3_proxy, record):
    row = record("1 S3 cut off during load_batch, back in time", f"S3 connections reset x{REFUSALS_WITHIN_RETRY_WINDOW}")
    name = small_champion["name"]
    uri = land(stack, name, "2013-08-blip.parquet")
    s3_proxy.refuse_next(REFUSALS_WITHIN_RETRY_WINDOW)

    with s3_through(s3_proxy):
        state = drift_monitor(spec=str(small_champion["spec_path"]), batch_uri=uri)

    assert state.is_completed(), state.message
    outcome = state.result()
    assert s3_proxy.refused == REFUSALS_WITHIN_RETRY_WINDOW and s3_proxy.forwarded > 0
    assert load_batch_attempts(stack, state.state_details.flow_run_id) == 2  # the outage hit load_batch, its retry got through
    assert (outcome.batch_uri, outcome.champion_version) == (uri, small_champion["version"])
    assert history_statuses(name, uri) == [outcome.status]
    assert processed_mark(uri).status == outcome.status
    assert registry.get_champion(name).version == small_champion["version"]
    row.survived, row.data_lost, row.recover_seconds = True, "none", s3_proxy.recovered_after()


def test_s3_down_past_the_retry_window_fails_the_run_and_a_rerun_checks_the_batch(small_champion, stack, s3_proxy, record):
    row = record("1 S3 cut off past the retry window, rerun", "S3 down for a whole run")
    name = small_champion["name"]
    uri = land(stack, name, "2013-08-outage.parquet")
    versions = [v.version for v in registry.list_versions(name)]
    s3_proxy.down()

    with s3_through(s3_proxy):
        failed = drift_monitor(spec=str(small_champion["spec_path"]), batch_uri=uri)
    went_down = s3_proxy.first_refusal_at

    assert failed.is_failed()
    with pytest.raises(TransientIOError, match="cannot reach the object store"):
        failed.result()
    assert s3_proxy.refused >= REFUSALS_WITHIN_RETRY_WINDOW
    # Nothing half-done: no verdict, no mark (the reconciliation will announce it again), nothing registered.
    assert processed_mark(uri) is None and history_statuses(name, uri) == []
    assert [v.version for v in registry.list_versions(name)] == versions

    s3_proxy.up()
    with s3_through(s3_proxy):
        rerun = drift_monitor(spec=str(small_champion["spec_path"]), batch_uri=uri)

    assert rerun.is_completed(), rerun.message
    outcome = rerun.result()
    assert history_statuses(name, uri) == [outcome.status]
    assert processed_mark(uri).status == outcome.status
    assert registry.get_champion(name).version == small_champion["version"]
    row.survived, row.data_lost, row.recover_seconds = True, "none (unmarked until the rerun)", time.monotonic() - went_down
