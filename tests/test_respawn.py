"""infra/respawn.py: the stack's worker is started again when it exits (it gives up when its server is away)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from support import wait_for

REPO = Path(__file__).resolve().parents[1]


def test_a_command_that_exits_is_started_again_until_the_wrapper_is_stopped(tmp_path):
    starts = tmp_path / "starts"
    exits_at_once = f"import pathlib, sys; p = pathlib.Path({str(starts)!r}); p.write_text((p.read_text() if p.exists() else '') + 'x'); sys.exit(3)"
    wrapper = subprocess.Popen(  # noqa: S603 - fixed argv
        [sys.executable, "-m", "infra.respawn", "--", sys.executable, "-c", exits_at_once],
        cwd=REPO, stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_for(lambda: starts.exists() and len(starts.read_text()) >= 3, "the command's third start", 60)
        wrapper.send_signal(signal.SIGTERM)
        # It stops (a clean exit), whether the signal found the command running or between two starts.
        assert wrapper.wait(timeout=30) == 0
    finally:
        if wrapper.poll() is None:
            wrapper.kill()
    assert "exited with code 3; starting it again" in wrapper.stderr.read()


def test_the_wrapper_forwards_a_stop_to_a_running_command(tmp_path):
    wrapper = subprocess.Popen(  # noqa: S603 - fixed argv
        [sys.executable, "-m", "infra.respawn", "--", sys.executable, "-c", "import time; print('up', flush=True); time.sleep(120)"],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert wrapper.stdout.readline().strip() == "up"
        wrapper.send_signal(signal.SIGTERM)
        assert wrapper.wait(timeout=30) == 0
        assert wrapper.stdout.read() == ""  # the stopped command was not started again
    finally:
        if wrapper.poll() is None:
            wrapper.kill()
