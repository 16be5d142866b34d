"""Retrain windows: which landed batches a retrain reads."""

from __future__ import annotations

import pytest

from leanops import batches, storage
from leanops.errors import BatchReadError
from leanops.spec import RetrainWindowSpec


@pytest.fixture()
def landed(tmp_path, flights_small):
    folder = tmp_path / "incoming"
    for month, part in flights_small.groupby("month"):
        storage.write_table(part, str(folder / f"2013-{month:02d}.parquet"))
    return folder


def test_a_prefix_reads_the_last_n_batches_oldest_first(landed):
    batch = batches.read_batch(f"{landed}/", RetrainWindowSpec(last_n=3))
    assert [s.rsplit("/", 1)[-1] for s in batch.sources] == ["2013-04.parquet", "2013-05.parquet", "2013-06.parquet"]
    assert sorted(batch.frame["month"].unique()) == [4, 5, 6]


def test_the_window_fingerprint_changes_when_a_batch_lands(landed, flights_july):
    before = batches.read_batch(f"{landed}/", RetrainWindowSpec(last_n=6))
    storage.write_table(flights_july, str(landed / "2013-07.parquet"))
    after = batches.read_batch(f"{landed}/", RetrainWindowSpec(last_n=6))
    assert before.fingerprint != after.fingerprint
    assert after.sources[-1].endswith("2013-07.parquet") and len(after.sources) == 6


def test_a_single_object_is_read_alone(landed):
    batch = batches.read_batch(str(landed / "2013-02.parquet"), RetrainWindowSpec(last_n=6))
    assert batch.sources == (str(landed / "2013-02.parquet"),)


def test_an_empty_window_is_a_clear_error(tmp_path):
    with pytest.raises(BatchReadError, match="no batches under"):
        batches.read_batch(f"{tmp_path}/", RetrainWindowSpec(last_n=6))


def test_batches_with_different_columns_are_refused(landed, flights_july):
    storage.write_table(flights_july.drop(columns=["dest"]), str(landed / "2013-07.parquet"))
    with pytest.raises(BatchReadError, match="disagree on their columns: \\['dest'\\]"):
        batches.read_batch(f"{landed}/", RetrainWindowSpec(last_n=6))


def test_default_source_is_the_window_prefix_in_the_bucket(spec, settings):
    assert batches.default_source(spec, settings) == f"s3://{settings.s3_bucket}/incoming/flights-delay/"
