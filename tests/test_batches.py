"""Retrain windows: which landed batches a retrain reads."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest

from leanops import batches, manifest, storage
from leanops.errors import BatchReadError, GateFailed
from leanops.settings import Settings
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


# A batch's identity (ETags / stat) decides a cached rerun before anything is read (issue 13).

def test_a_batch_is_identified_as_it_would_be_read_and_a_change_is_a_new_identity(landed, flights_july):
    window = RetrainWindowSpec(last_n=6)
    one = str(landed / "2013-02.parquet")
    assert batches.identify_batch(one, window).identity == batches.read_batch(one, window).identity
    assert batches.identify_batch(f"{landed}/", window).identity == batches.read_batch(f"{landed}/", window).identity
    before = {uri: batches.identify_batch(uri, window).identity for uri in (one, f"{landed}/")}

    storage.write_table(flights_july, one)  # other content under the same name
    storage.write_table(flights_july, str(landed / "2013-07.parquet"))  # a batch lands

    assert all(batches.identify_batch(uri, window).identity != identity for uri, identity in before.items())


def test_an_s3_batch_is_identified_by_its_etag_whether_listed_headed_or_read(s3_endpoint, settings, flights_small, flights_july):
    prefix = f"s3://{settings.s3_bucket}/identity-{uuid.uuid4().hex[:8]}/"
    storage.ensure_bucket(settings.s3_bucket, settings)
    for month, part in flights_small.groupby("month"):
        storage.write_table(part, f"{prefix}2013-{month:02d}.parquet", settings)
    window, one = RetrainWindowSpec(last_n=6), f"{prefix}2013-03.parquet"
    for uri in (one, prefix):
        assert batches.identify_batch(uri, window, settings=settings).identity == batches.read_batch(uri, window, settings=settings).identity
    before = batches.identify_batch(one, window, settings=settings).identity

    storage.write_table(flights_small[flights_small["month"] == 3], one, settings)  # the same bytes again
    assert batches.identify_batch(one, window, settings=settings).identity == before
    storage.write_table(flights_july, one, settings)
    assert batches.identify_batch(one, window, settings=settings).identity != before


def test_default_source_is_the_window_prefix_in_the_bucket(spec, settings):
    assert batches.default_source(spec, settings) == f"s3://{settings.s3_bucket}/incoming/flights-delay/"


# The retrain window is time and rows, never an object count (issue 10, finding 10).

def _burst(folder, flights_july, count: int = 50, rows: int = 40) -> None:
    """``count`` small real July objects landed at once in a folder nested under the prefix."""
    for i in range(count):
        storage.write_table(flights_july.iloc[i * rows:(i + 1) * rows], str(folder / "backfill" / f"part-{i:03d}.parquet"))


def test_a_burst_of_small_objects_does_not_displace_the_time_window(landed, flights_july):
    _burst(landed, flights_july)
    batch = batches.read_batch(f"{landed}/", RetrainWindowSpec(days=181), time_column="time_hour")
    assert len(batch.frame) == 4800
    assert sorted(batch.frame["month"].unique()) == [1, 2, 3, 4, 5, 6]
    assert not any("backfill" in s for s in batch.sources)


def test_a_file_uri_prefix_leaves_nested_folders_out_too(landed, flights_july):
    _burst(landed, flights_july)
    batch = batches.read_batch(f"file://{landed}/", RetrainWindowSpec(days=181), time_column="time_hour")
    assert len(batch.sources) == 6 and len(batch.frame) == 4800


def test_nested_folders_count_only_when_the_window_says_so(landed, flights_july):
    _burst(landed, flights_july)
    batch = batches.read_batch(f"{landed}/", RetrainWindowSpec(days=181, recursive=True), time_column="time_hour")
    # 2,000 July rows join, and the window slides: it now ends on July 31 and starts 181 days before.
    assert sum("backfill" in s for s in batch.sources) == 50
    assert (batch.frame["month"] == 7).sum() == 2000
    assert set(batch.frame["month"]) >= {2, 3, 4, 5, 6, 7} and (batch.frame["month"] == 1).sum() < 100


def test_the_window_is_the_last_days_before_the_newest_row(landed):
    batch = batches.read_batch(f"{landed}/", RetrainWindowSpec(days=60), time_column="time_hour")
    assert sorted(batch.frame["month"].unique()) == [5, 6]
    assert [s.rsplit("/", 1)[-1] for s in batch.sources] == ["2013-05.parquet", "2013-06.parquet"]


def test_a_short_window_reaches_back_for_min_rows(landed):
    batch = batches.read_batch(f"{landed}/", RetrainWindowSpec(days=30, min_rows=2000), time_column="time_hour")
    assert len(batch.frame) == 2000
    assert batch.frame["time_hour"].min() > pd.Timestamp("2013-03-01", tz="UTC")
    assert sorted(batch.frame["month"].unique()) == [4, 5, 6]


def test_fewer_rows_than_min_rows_is_a_clear_error(landed):
    with pytest.raises(BatchReadError, match="holds 4800 rows, fewer than retrain_window.min_rows = 10000"):
        batches.read_batch(f"{landed}/", RetrainWindowSpec(days=181, min_rows=10000), time_column="time_hour")


def test_markers_empty_objects_and_other_suffixes_do_not_count(landed):
    (landed / "_SUCCESS").write_bytes(b"")
    (landed / "empty.parquet").write_bytes(b"")
    (landed / "notes.txt").write_text("not a batch")
    (landed / ".2013-07.parquet.crc").write_text("checksum")
    batch = batches.read_batch(f"{landed}/", RetrainWindowSpec(days=181), time_column="time_hour")
    assert len(batch.sources) == 6 and len(batch.frame) == 4800


def test_csv_batches_count_by_their_suffix(landed, flights_july):
    storage.write_table(flights_july, str(landed / "2013-07.csv"))
    batch = batches.read_batch(f"{landed}/", RetrainWindowSpec(days=181), time_column="time_hour")
    assert batch.sources[-1].endswith("2013-07.csv") and (batch.frame["month"] == 7).sum() == 2000
    parquet_only = batches.read_batch(f"{landed}/", RetrainWindowSpec(days=181, suffixes=(".parquet",)), time_column="time_hour")
    assert 7 not in set(parquet_only.frame["month"])


def test_a_batch_recorded_as_rejected_is_left_out_of_the_window(landed, flights_july, tmp_path):
    settings = Settings(monitoring_root=str(tmp_path / "monitoring"))
    broken = landed / "2013-07.parquet"
    storage.write_table(flights_july.drop(columns=["dest"]), str(broken))
    manifest.mark_processed(str(broken), "flights-delay", "rejected: ContractViolation", settings=settings)
    manifest.mark_processed(str(landed / "2013-06.parquet"), "flights-delay", "ok", settings=settings)
    batch = batches.read_batch(
        f"{landed}/", RetrainWindowSpec(days=181), "time_hour", batches.rejected_by_manifest(settings), settings=settings
    )
    assert len(batch.sources) == 6 and str(broken) not in batch.sources
    assert len(batch.frame) == 4800


def test_last_n_only_bounds_the_objects_read(landed):
    batch = batches.read_batch(f"{landed}/", RetrainWindowSpec(days=181, last_n=2), time_column="time_hour")
    assert sorted(batch.frame["month"].unique()) == [5, 6]


def test_a_time_window_needs_the_specs_time_column(landed):
    with pytest.raises(BatchReadError, match="need the spec's time.column"):
        batches.read_batch(f"{landed}/", RetrainWindowSpec(days=181))


def test_the_flights_spec_trains_on_about_six_months(spec):
    window = spec.retrain_window
    assert window.days == 181 and not window.recursive and window.last_n is None


def test_a_training_set_under_half_the_champions_is_refused():
    with pytest.raises(GateFailed, match="training on 3253 rows; champion v4 trained on 110000: fewer than half"):
        batches.check_training_size(3253, 110000.0, "4", allow_small=False)


def test_a_small_training_set_registers_when_allowed_and_a_fair_one_always():
    assert "registered anyway" in batches.check_training_size(3253, 110000.0, "4", allow_small=True)
    assert batches.check_training_size(60000, 110000.0, "4", allow_small=False).endswith("trained on 110000")
    assert "no champion" in batches.check_training_size(3253, None, None, allow_small=False)


def test_reading_a_window_reports_each_object_until_all_are_read(landed):
    heard = []

    batch = batches.read_batch(f"{landed}/", RetrainWindowSpec(last_n=6), on_progress=lambda share, done: heard.append((share, done)))

    shares = [share for share, _ in heard]
    assert shares == sorted(shares) and shares[0] == 0.0 and shares[-1] == 1.0 and len(heard) == 1 + len(batch.sources)
    assert heard[0][1].startswith(f"{len(batch.sources)} objects in the window")
    assert heard[-1][1] == f"read {len(batch.sources)} of {len(batch.sources)} objects, {len(batch.frame):,} rows"


def test_an_s3_listing_reports_each_page_of_keys(s3_endpoint, settings):
    prefix = f"s3://{settings.s3_bucket}/pages-{uuid.uuid4().hex[:8]}/"
    storage.ensure_bucket(settings.s3_bucket, settings)
    with ThreadPoolExecutor(8) as pool:  # three pages of S3's 1,000 keys
        list(pool.map(lambda i: storage.write_bytes(f"{prefix}k{i:05d}.json", b"{}", settings), range(2_050)))
    pages = []

    found = storage.list_objects(prefix, settings=settings, on_page=pages.append)

    assert len(found) == 2_050 and pages == [1_000, 2_000, 2_050]
