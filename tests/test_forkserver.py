"""The fork server and the deployments' flow-run command, as real processes talking over a Unix socket.

The server runs ``tests/forkserver_target.py`` in place of ``prefect.engine`` (same mechanism, a module
that reports what its process sees); the Prefect side is covered end to end in tests/e2e.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from deployments.forkserver import ForkServer
from infra.services import process_alive
from support import wait_for

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
TARGET = "forkserver_target"


class Server:
    def __init__(self, preload: list[str], env: dict[str, str] | None = None) -> None:
        # Short path: a Unix socket address holds at most 107 bytes.
        self.folder = Path(tempfile.mkdtemp(prefix="lfs-", dir="/tmp"))
        self.socket = self.folder / "s.sock"
        heartbeat = self.folder / "heartbeat"
        self.log = (self.folder / "server.log").open("w+b")
        self.process = subprocess.Popen(  # noqa: S603 - fixed argv
            [sys.executable, "-m", "deployments.forkserver", "--socket", str(self.socket),
             "--heartbeat", str(heartbeat), "--runnable", TARGET],
            cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(TESTS), "LEANOPS_FORK_SERVER_PRELOAD": json.dumps(preload), **(env or {})},
        )
        wait_for(lambda: heartbeat.exists() or self.process.poll() is not None, "the fork server to serve", 120)
        assert self.process.poll() is None, self.output()

    def output(self) -> str:
        self.log.flush()
        return (self.folder / "server.log").read_text(errors="replace")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)


@pytest.fixture
def server():
    started = Server(preload=[TARGET])
    yield started
    started.stop()


def command(socket: Path, *args: str, module: str = TARGET) -> list[str]:
    return [sys.executable, "-m", "deployments.engine_command", "--module", module, *args]


def client_env(socket: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(TESTS), "LEANOPS_FORK_SERVER_SOCKET": str(socket), **extra}


def run_client(socket: Path, *args: str, module: str = TARGET, stdin: str = "", cwd: Path | None = None,
               **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(  # noqa: S603 - fixed argv
        command(socket, *args, module=module), input=stdin, capture_output=True, text=True, timeout=60,
        cwd=cwd, env=client_env(socket, **env),
    )


def test_a_run_is_forked_from_the_server_with_the_clients_streams_environment_and_directory(server, tmp_path):
    done = run_client(server.socket, "report", "3", stdin="hello", cwd=tmp_path, TARGET_MARKER="from-the-client")

    assert done.returncode == 3, done.stderr
    report = json.loads(done.stdout)
    assert report["ppid"] == server.process.pid  # forked by the server, not started by the client
    assert report["cwd"] == str(tmp_path)
    assert report["marker"] == "from-the-client"
    assert report["stdin"] == "hello"
    assert report["argv"] == ["report", "3"]
    assert "a line on stderr" in done.stderr
    assert "starting cold" not in done.stderr
    assert f"forked pid {report['pid']}" in server.output()


def test_concurrent_runs_each_get_their_own_streams_and_environment(server, tmp_path):
    with ThreadPoolExecutor(max_workers=4) as pool:
        runs = list(pool.map(lambda i: run_client(server.socket, "report", str(i), stdin=f"in-{i}", TARGET_MARKER=f"m-{i}"), range(4)))

    for i, done in enumerate(runs):
        report = json.loads(done.stdout)
        assert (done.returncode, report["stdin"], report["marker"]) == (i, f"in-{i}", f"m-{i}")
        assert report["ppid"] == server.process.pid


def test_without_a_fork_server_the_command_runs_the_module_cold(tmp_path):
    done = run_client(tmp_path / "nobody.sock", "report", "2", stdin="cold", TARGET_MARKER="still-here")

    assert done.returncode == 2
    report = json.loads(done.stdout)
    assert report["ppid"] == os.getpid()  # the client became the module itself (exec, same pid)
    assert (report["stdin"], report["marker"]) == ("cold", "still-here")
    assert "starting cold (no fork server answered" in done.stderr


def test_a_module_the_server_does_not_run_is_refused_and_runs_cold(server):
    done = run_client(server.socket, module="json.tool", stdin='{"a": 1}')

    assert done.returncode == 0
    assert json.loads(done.stdout) == {"a": 1}
    assert "fork server refused the run: module 'json.tool' is not runnable here" in done.stderr
    assert "starting cold" in done.stderr


def _start_sleeper(socket: Path) -> tuple[subprocess.Popen, int]:
    client = subprocess.Popen(  # noqa: S603 - fixed argv
        command(socket, "sleep"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=client_env(socket),
    )
    child_pid = int(client.stdout.readline())
    assert child_pid != client.pid
    return client, child_pid


def test_sigterm_to_the_client_reaches_the_run_and_the_client_dies_of_it(server):
    client, child_pid = _start_sleeper(server.socket)

    client.send_signal(signal.SIGTERM)

    assert client.wait(timeout=20) == -signal.SIGTERM  # what the worker would see from a cold process
    wait_for(lambda: not process_alive(child_pid), "the run to end", 20.0)
    assert f"pid {child_pid} exited with -15" in server.output()


def test_a_killed_client_does_not_leave_its_run_behind(server):
    client, child_pid = _start_sleeper(server.socket)

    client.kill()
    client.wait(timeout=10)

    wait_for(lambda: not process_alive(child_pid), "the orphaned run to be terminated", 20.0)
    assert f"client of pid {child_pid} has gone" in server.output()


def test_stopping_the_server_stops_its_runs_and_tells_their_clients(server):
    client, child_pid = _start_sleeper(server.socket)

    assert server.stop() == 0

    assert client.wait(timeout=20) == -signal.SIGTERM
    assert not process_alive(child_pid)
    assert not server.socket.exists()


def test_prefect_settings_in_a_run_come_from_the_run_environment_not_the_servers():
    started = Server(preload=["prefect", TARGET], env={"PREFECT_API_URL": "http://server-env:1/api"})
    try:
        done = run_client(started.socket, "prefect-api-url", PREFECT_API_URL="http://run-env:2/api")
    finally:
        started.stop()

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "http://run-env:2/api"
    assert "starting cold" not in done.stderr


def test_leanops_settings_in_a_run_come_from_the_run_environment(server, tmp_path):
    """The server read (and cached) leanops' settings from its own environment when it started."""
    done = run_client(server.socket, "specs-dir", LEANOPS_SPECS_DIR=str(tmp_path))

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(tmp_path)
    assert "starting cold" not in done.stderr


def test_each_run_draws_its_own_random_numbers_as_a_new_process_would():
    """Forks share the server's generator state unless the library reseeds after a fork (the standard
    library and numpy do, via os.register_at_fork): a run must not repeat another run's draws."""
    started = Server(preload=["numpy", TARGET])
    try:
        draws = [run_client(started.socket, "random").stdout.split() for _ in range(3)]
    finally:
        started.stop()

    assert len({stdlib for stdlib, _ in draws}) == 3, draws
    assert len({numpy for _, numpy in draws}) == 3, draws


def test_a_socket_path_too_long_for_unix_sockets_is_a_clear_error():
    with pytest.raises(ValueError, match="LEANOPS_FORK_SERVER_SOCKET to a shorter path"):
        ForkServer(Path("/tmp") / ("x" * 120) / "s.sock").serve()


def test_a_second_server_on_the_same_socket_is_refused(server):
    with pytest.raises(RuntimeError, match="another fork server already listens"):
        ForkServer(server.socket).serve()


def test_the_command_imports_nothing_but_the_standard_library():
    """It runs once per flow run before anything else: importing Prefect or pydantic here would undo the point."""
    probe = ("import sys, deployments.engine_command; "
             "print(sorted({m.split('.')[0] for m in sys.modules} & {'prefect', 'pydantic', 'leanops', 'pandas', 'yaml'}))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)  # noqa: S603

    assert done.stdout.strip() == "[]"


def test_doctor_finds_the_server_answering_and_names_it_unreachable_once_killed(server):
    from leanops import doctor
    from leanops.settings import Settings

    settings = Settings(fork_server_socket=server.socket)
    (live,) = doctor.check_fork_server(settings, timeout=5)
    assert live.status == "ok" and live.said == f"answers at {server.socket} (pid {server.process.pid})"
    assert "refused a request" not in server.output()  # a ping is not a bad run request

    server.process.kill()  # SIGKILL: its socket file stays behind, nobody listens on it
    server.process.wait(timeout=30)
    (dead,) = doctor.check_fork_server(settings, timeout=5)
    assert dead.status == "fail" and dead.said.startswith(f"unreachable at {server.socket} (connection refused)")
    assert dead.fix.startswith("start what is down: make stack-up")
