"""Immutable MLflow artifacts are fetched once per machine (leanops/local_cache.py): the second read of a
champion's reference does not touch MLflow, a failed download leaves nothing, two readers at once keep
one complete copy, and the cache is pruned by last use and size without pulling an entry from under a
reader."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest

from leanops import registry
from leanops.errors import RegistryUnavailable
from leanops.local_cache import EVICTION_GRACE_SECONDS, CacheLimits, entry, prune, use_once_fetched
from leanops.settings import Settings
from leanops_cli.app import app
from support import environment
from typer.testing import CliRunner


def fetch_once(root: Path, key: str, fetch) -> Path:
    return use_once_fetched(root, key, fetch, lambda path: path)


def write(folder: Path, text: str) -> Path:
    (folder / "sub").mkdir()
    (folder / "sub" / "data.txt").write_text(text)
    return folder / "sub" / "data.txt"


def test_a_key_is_fetched_once_and_read_from_disk_after(tmp_path):
    calls = []

    def fetch(folder: Path) -> Path:
        calls.append(folder)
        return write(folder, "v1 reference")

    first = fetch_once(tmp_path, "run abc reference/reference.parquet", fetch)
    second = fetch_once(tmp_path, "run abc reference/reference.parquet", fetch)

    assert len(calls) == 1 and first == second and second.read_text() == "v1 reference"
    assert fetch_once(tmp_path, "run def reference/reference.parquet", lambda f: write(f, "other")).read_text() == "other"


def test_a_failed_download_leaves_nothing_and_the_next_call_fetches_again(tmp_path):
    def broken(folder: Path) -> Path:
        write(folder, "half")
        raise ConnectionResetError("reset mid-download")

    with pytest.raises(ConnectionResetError):
        fetch_once(tmp_path, "k", broken)

    assert list(tmp_path.iterdir()) == []
    assert fetch_once(tmp_path, "k", lambda f: write(f, "whole")).read_text() == "whole"


def test_two_readers_at_once_keep_one_complete_copy(tmp_path):
    started = threading.Barrier(2)
    found = []

    def slow(folder: Path) -> Path:
        started.wait(5)  # both downloads are under way before either finishes
        return write(folder, "complete")

    threads = [threading.Thread(target=lambda: found.append(fetch_once(tmp_path, "k", slow).read_text())) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    assert found == ["complete", "complete"]
    assert [p.name.startswith(".fetching-") for p in tmp_path.iterdir()] == [False]


def test_a_champions_reference_is_read_again_with_mlflow_gone(tmp_path, mlflow_server):
    settings = Settings(mlflow_tracking_uri=mlflow_server, mlflow_http_retries=0, home=tmp_path / "home")
    mlflow_client = registry.client(settings)
    run = mlflow_client.create_run(mlflow_client.create_experiment(f"cache-{uuid.uuid4().hex[:8]}"))
    reference = pd.DataFrame({"temp": [31.5, 40.1], "carrier": ["UA", "DL"]})
    (tmp_path / "reference").mkdir()
    reference.to_parquet(tmp_path / "reference" / "reference.parquet")
    mlflow_client.log_artifacts(run.info.run_id, str(tmp_path / "reference"), "reference")
    info = registry.ModelVersionInfo("cache-model", "1", run.info.run_id, "models:/cache-model/1", "")

    pd.testing.assert_frame_equal(registry.load_reference_sample(info, settings), reference)
    gone = Settings(mlflow_tracking_uri="http://127.0.0.1:9", mlflow_http_retries=0, home=tmp_path / "home")
    pd.testing.assert_frame_equal(registry.load_reference_sample(info, gone), reference)
    with pytest.raises(RegistryUnavailable):  # nothing cached: the outage shows
        registry.load_holdout(info, gone)


DAY = 86_400.0


def cached(root: Path, key: str, size: int, last_used: float) -> Path:
    use_once_fetched(root, key, lambda folder: write(folder, "x" * size), lambda path: path)
    os.utime(entry(root, key), (last_used, last_used))
    return entry(root, key)


def test_what_was_unused_for_the_keep_days_goes_and_the_rest_stays(tmp_path):
    now = time.time()
    stale = cached(tmp_path, "run old model", 100, now - 8 * DAY)
    recent = cached(tmp_path, "run current model", 100, now - 2 * DAY)

    result = prune(tmp_path, CacheLimits(max_bytes=10_000, keep_days=7), now=now)

    assert result.removed == (stale.name,) and result.kept == 1
    assert not stale.exists() and (recent / ".path").exists()


def test_over_the_size_cap_the_least_recently_used_go_first_but_never_one_in_use(tmp_path):
    now = time.time()
    oldest = cached(tmp_path, "a", 1000, now - 3 * 3600)
    older = cached(tmp_path, "b", 1000, now - 2 * 3600)
    newer = cached(tmp_path, "c", 1000, now - 3600)
    in_use = cached(tmp_path, "d", 1000, now - EVICTION_GRACE_SECONDS / 2)

    result = prune(tmp_path, CacheLimits(max_bytes=2500, keep_days=7), now=now)
    assert set(result.removed) == {oldest.name, older.name} and result.kept_bytes < 2500
    assert newer.exists() and in_use.exists()

    result = prune(tmp_path, CacheLimits(max_bytes=1, keep_days=7), now=now)
    assert result.removed == (newer.name,) and in_use.exists()  # over the cap still, but being read


def test_a_hit_counts_as_a_use_and_a_download_prunes(tmp_path):
    now = time.time()
    used_again = cached(tmp_path, "used again", 100, now - 30 * DAY)
    forgotten = cached(tmp_path, "forgotten", 100, now - 30 * DAY)
    fetch_once(tmp_path, "used again", lambda folder: pytest.fail("a hit must not download"))

    use_once_fetched(tmp_path, "new", lambda folder: write(folder, "n"), lambda path: path, CacheLimits(10_000, 7))

    assert used_again.exists() and entry(tmp_path, "new").exists()
    assert not forgotten.exists()


def test_a_reader_whose_entry_is_evicted_mid_read_fetches_it_again(tmp_path):
    downloads = []

    def fetch(folder: Path) -> Path:
        downloads.append(1)
        return write(folder, f"copy {len(downloads)}")

    def read_while_evicted(path: Path) -> str:
        if len(downloads) == 1:  # another process prunes it between our lookup and our read
            os.utime(entry(tmp_path, "k"), (0, 0))
            prune(tmp_path, CacheLimits(max_bytes=1, keep_days=1))
        return path.read_text()

    assert use_once_fetched(tmp_path, "k", fetch, read_while_evicted) == "copy 2"


def test_a_failing_read_of_a_present_entry_is_the_callers_error(tmp_path):
    fetch_once(tmp_path, "k", lambda folder: write(folder, "not parquet"))

    with pytest.raises(Exception, match="(?i)parquet|magic"):
        use_once_fetched(tmp_path, "k", lambda folder: pytest.fail("no download"), pd.read_parquet)


def test_what_a_killed_download_left_goes_after_an_hour(tmp_path):
    now = time.time()
    for name, age in ((".fetching-dead", 2 * 3600), (".fetching-live", 60), (".evicting-dead-1", 2 * 3600)):
        (tmp_path / name).mkdir()
        os.utime(tmp_path / name, (now - age, now - age))

    prune(tmp_path, CacheLimits(max_bytes=10_000, keep_days=7), now=now)

    assert sorted(p.name for p in tmp_path.iterdir()) == [".fetching-live"]


def test_leanops_cache_prune(tmp_path):
    root = tmp_path / "cache" / "mlflow-artifacts"
    stale = cached(root, "run r1 reference/reference.parquet", 2_000_000, time.time() - 10 * DAY)
    fresh = cached(root, "run r2 reference/reference.parquet", 1000, time.time() - 3600)

    with environment(LEANOPS_HOME=str(tmp_path)):
        seen = CliRunner().invoke(app, ["cache", "prune", "--dry-run"])
        assert seen.exit_code == 0 and "would remove 1 cached artifact(s), 2.0 MB" in seen.output and stale.exists()
        done = CliRunner().invoke(app, ["cache", "prune", "--keep-days", "30", "--max-mb", "1", "--json"])

    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["removed"] == [stale.name]
    assert not stale.exists() and fresh.exists()
