"""The data contract on real flights, and a dozen ways a batch goes wrong. Each bad batch is
rejected with one error that names the problem; every problem of a batch is listed at once."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from leanops import contract, storage
from leanops.errors import BatchReadError, ContractViolation


def violations_of(frame: pd.DataFrame, spec) -> list[str]:
    with pytest.raises(ContractViolation) as caught:
        contract.validate_batch(frame, spec, "mem://batch", "fp")
    return caught.value.violations


def test_real_flights_pass_the_contract(flights_small, spec):
    report = contract.validate_batch(flights_small, spec, "mem://flights", "fp")
    assert report.n_rows == len(flights_small)
    assert report.warnings == ()


def test_missing_column_is_named(flights_small, spec):
    problems = violations_of(flights_small.drop(columns=["carrier"]), spec)
    assert any("missing column 'carrier'" in p for p in problems)


def test_missing_target_source_is_named(flights_small, spec):
    problems = violations_of(flights_small.drop(columns=["dep_delay"]), spec)
    assert any("'dep_delay' (the target source)" in p for p in problems)


def test_wrong_dtype(flights_small, spec):
    bad = flights_small.assign(distance=flights_small["distance"].astype(str) + " mi")
    problems = violations_of(bad, spec)
    assert any("'distance' must be numeric" in p for p in problems)


def test_all_null_column(flights_small, spec):
    problems = violations_of(flights_small.assign(dest=None), spec)
    assert problems == ["column 'dest' is entirely null"]


def test_null_share_above_the_allowance(flights_small, spec):
    bad = flights_small.copy()
    bad.loc[bad.index[: len(bad) // 4], "dep_delay"] = np.nan
    problems = violations_of(bad, spec)
    assert any(p.startswith("column 'dep_delay' has 2") and "nulls; at most 10.0% allowed" in p for p in problems)


def test_out_of_range_values(flights_small, spec):
    bad = flights_small.copy()
    bad.loc[bad.index[:3], "hour"] = 27
    problems = violations_of(bad, spec)
    assert any("'hour' has 3 values outside [0.0, 23.0]" in p for p in problems)


def test_unseen_category_rejected_where_the_spec_says_so(flights_small, spec):
    bad = flights_small.copy()
    bad.loc[bad.index[:2], "origin"] = "BOS"
    problems = violations_of(bad, spec)
    assert any("'origin' has 2 values in unseen categories: 'BOS'" in p for p in problems)


def test_unseen_category_reported_as_warning_where_the_spec_says_so(flights_small, spec):
    odd = flights_small.copy()
    odd.loc[odd.index[:5], "carrier"] = "ZZ"
    report = contract.validate_batch(odd, spec, "mem://batch", "fp")
    assert any("'carrier' has 5 values in unseen categories" in w for w in report.warnings)


def test_duplicated_rows(flights_small, spec):
    bad = pd.concat([flights_small, flights_small.head(10)], ignore_index=True)
    problems = violations_of(bad, spec)
    assert any(p.startswith("10 duplicated rows") for p in problems)


def test_too_few_rows(flights_small, spec):
    problems = violations_of(flights_small.head(20), spec)
    assert any("batch has 20 rows" in p for p in problems)


def test_unparseable_timestamps(flights_small, spec):
    bad = flights_small.assign(time_hour=flights_small["time_hour"].astype(str))
    bad.loc[bad.index[:4], "time_hour"] = "yesterday"
    problems = violations_of(bad, spec)
    assert any("'time_hour' must be datetime: 4 values do not parse" in p for p in problems)


def test_every_problem_is_listed_in_one_error(flights_small, spec):
    bad = flights_small.drop(columns=["carrier"]).assign(dest=None)
    bad.loc[bad.index[:3], "hour"] = 99
    problems = violations_of(bad, spec)
    assert len(problems) == 3


def test_integer_columns_from_csv_with_gaps_are_accepted(flights_small, spec):
    # CSV readers make integer columns with a gap float; whole numbers still satisfy "integer".
    with_gap = flights_small.assign(minute=flights_small["minute"].astype(float))
    assert contract.validate_batch(with_gap, spec, "mem://b", "fp").n_rows == len(flights_small)


def test_empty_file_is_a_read_error(tmp_path):
    empty = tmp_path / "empty.parquet"
    empty.write_bytes(b"")
    with pytest.raises(BatchReadError, match="the file is empty"):
        storage.read_table(str(empty))


def test_non_parquet_bytes_are_a_read_error(tmp_path):
    fake = tmp_path / "batch.parquet"
    fake.write_text("month,hour\n1,2\n")
    with pytest.raises(BatchReadError, match="not a parquet file"):
        storage.read_table(str(fake))


def test_truncated_parquet_is_a_read_error(tmp_path, flights_small):
    buffer = io.BytesIO()
    flights_small.to_parquet(buffer)
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(BatchReadError, match="cannot be read as a table"):
        storage.read_table(str(broken))


def test_csv_batches_read_and_fingerprint_by_content(tmp_path, flights_small):
    path = tmp_path / "batch.csv"
    storage.write_table(flights_small.head(100), str(path))
    frame, fingerprint = storage.read_table(str(path))
    assert len(frame) == 100
    assert fingerprint == storage.stat(str(path)).fingerprint
