"""A batch larger than the run may hold is refused from its size, before it is read."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from leanops import storage
from leanops.errors import BatchTooLarge
from support import environment


def test_a_file_over_the_configured_limit_is_refused_before_it_is_read(tmp_path):
    uri = storage.write_table(pd.DataFrame({"x": range(1000)}), str(tmp_path / "batch.parquet"))
    with environment(LEANOPS_MAX_BATCH_BYTES="100"):
        with pytest.raises(BatchTooLarge, match=r"batch.parquet: .* bytes is more than this run may read into memory \(100 bytes: LEANOPS_MAX_BATCH_BYTES\)"):
            storage.read_table(uri)
    assert len(storage.read_table(uri)[0]) == 1000  # no limit set, none applied


def test_without_a_setting_the_budget_follows_the_process_memory_limit():
    # In a child process: a memory limit cannot be raised again once lowered.
    code = (
        "import resource; from leanops import memory\n"
        "print(memory.batch_budget()[0])\n"
        "resource.setrlimit(resource.RLIMIT_DATA, (2**30, resource.RLIM_INFINITY))\n"
        "budget, source = memory.batch_budget(); print(budget); print(source)\n"
    )
    unlimited, budget, source = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert unlimited == "None"
    assert 0 < int(budget) < 2**30 / 6 and source.startswith("RLIMIT_DATA 1,074 MB with ")
