"""Immutable MLflow artifacts are fetched once per machine (leanops/local_cache.py): the second read of a
champion's reference does not touch MLflow, a failed download leaves nothing, and two readers at once
keep one complete copy."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pandas as pd
import pytest

from leanops import registry
from leanops.errors import RegistryUnavailable
from leanops.local_cache import fetch_once
from leanops.settings import Settings


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
