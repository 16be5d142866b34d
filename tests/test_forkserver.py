"""The fork server and the deployments' flow-run command, as real processes talking over a Unix socket.

The server runs ``tests/forkserver_target.py`` in place of ``prefect.engine`` (same mechanism, a module
that reports what its process sees); the Prefect side is covered end to end in tests/e2e.
"""

from __future__ import annotations

import json
import os
import pwd
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from deployments.engine_command import STANDARD_STREAMS, peer_credentials, recv_frame, send_frame
from deployments.forkserver import ForkServer
from infra.services import process_alive
from support import wait_for

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
TARGET = "forkserver_target"
# Another user, for real: root ignores folder modes, so only a process of another uid shows who is refused.
OTHER_UID = pwd.getpwnam("nobody").pw_uid
OTHER_GID = pwd.getpwnam("nobody").pw_gid


class Server:
    def __init__(self, preload: list[str], env: dict[str, str] | None = None, socket_folder_mode: int | None = None) -> None:
        # Short path: a Unix socket address holds at most 107 bytes.
        self.folder = Path(tempfile.mkdtemp(prefix="lfs-", dir="/tmp"))
        self.socket = self.folder / "run" / "s.sock"  # the server makes its folder, unless socket_folder_mode
        if socket_folder_mode is not None:
            self.socket.parent.mkdir()
            self.socket.parent.chmod(socket_folder_mode)
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
    assert stat.S_IMODE(server.socket.parent.stat().st_mode) == 0o700  # made by the server, for its user only


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


def test_a_run_leaves_the_preloaded_libraries_out_of_its_garbage_collections():
    """A flow run allocates heavily (frames, reports): its collections must not walk every object the
    server preloaded, or each costs a walk of hundreds of thousands of objects (0.41 s vs 0.065 s to make
    one boto3 client, measured)."""
    started = Server(preload=["pandas", TARGET])
    try:
        frozen = int(run_client(started.socket, "frozen").stdout)
        cold = int(run_client(started.folder / "nobody.sock", "frozen").stdout)
    finally:
        started.stop()

    assert cold == 0
    assert frozen > 50_000  # pandas and what it imports: ~100,000 objects here


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
# --- who may talk to whom ---------------------------------------------------------------------------


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.fail(f"this test switches a process to uid {OTHER_UID} (nobody) with setuid, which needs root; it "
                    f"runs as uid {os.geteuid()}. Run it as root (CI does): skipping would leave the check untested")


class AsOtherUser:
    """``work(report)`` in a forked child that has really become uid/gid ``nobody`` (setgroups, setgid,
    setuid: no way back to root). ``report(obj)`` sends a JSON line to the test; so does the return value."""

    def __init__(self, work: Callable[[Callable[[object], None]], object]) -> None:
        require_root()
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            os.close(read_fd)
            status = 1

            def report(message: object) -> None:
                os.write(write_fd, json.dumps(message).encode() + b"\n")

            try:
                os.setgroups([])
                os.setgid(OTHER_GID)
                os.setuid(OTHER_UID)
                report({"done": work(report)})
                status = 0
            except BaseException as exc:  # noqa: BLE001 - reported to the test, which fails on it
                report({"error": f"{type(exc).__name__}: {exc}"})
            finally:
                os._exit(status)
        os.close(write_fd)
        self.pid = pid
        self._read_fd = read_fd
        self._buffer = b""

    def next_message(self, timeout: float = 30.0) -> object:
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._read_fd], [], [], left)[0]:
                raise AssertionError(f"no word from the child of uid {OTHER_UID} within {timeout:.0f} s")
            chunk = os.read(self._read_fd, 65536)
            if not chunk:
                raise AssertionError(f"the child of uid {OTHER_UID} exited without a word")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        message = json.loads(line)
        assert "error" not in message, message["error"]
        return message

    def result(self, timeout: float = 30.0) -> object:
        message = self.next_message(timeout)
        os.close(self._read_fd)
        os.waitpid(self.pid, 0)
        return message["done"]


def send_a_run_request(socket_path: Path) -> object:
    """What a client not using engine_command might send: a full request, streams included."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(socket_path))
    except PermissionError as exc:
        return {"connect": f"PermissionError: {exc.strerror}"}
    with sock:
        sock.settimeout(20)
        request = {"module": TARGET, "args": ["report"], "env": {"TARGET_MARKER": "intruder"}, "cwd": "/"}
        try:
            send_frame(sock, request, fds=STANDARD_STREAMS)
        except BrokenPipeError:
            pass  # the server may answer and close before the request is out: its answer is still there to read
        answer, _ = recv_frame(sock)
        return answer


def test_a_client_of_another_uid_is_refused_by_the_server(server):
    nobody_before = AsOtherUser(lambda _report: send_a_run_request(server.socket)).result()
    assert nobody_before == {"connect": "PermissionError: Permission denied"}  # the 0700 folder keeps it out

    # Let it reach the socket: what refuses it now is the server's SO_PEERCRED check, not the folder's mode.
    for folder in (server.folder, server.socket.parent):
        folder.chmod(0o711)
    server.socket.chmod(0o666)
    intruder = AsOtherUser(lambda _report: send_a_run_request(server.socket))
    answer = intruder.result()

    assert answer == {"error": f"this fork server serves uid 0 only, not uid {OTHER_UID}"}
    log = server.output()  # logged before the answer was sent
    assert f"refused a connection from pid {intruder.pid} (uid {OTHER_UID}, gid {OTHER_GID})" in log
    assert "forked pid" not in log
    assert json.loads(run_client(server.socket, "report").stdout)["ppid"] == server.process.pid  # still serves uid 0


def test_the_command_does_not_hand_its_environment_to_a_server_of_another_uid(tmp_path):
    """Someone else listening on the socket path (an impostor, or a fork server of another user) gets
    nothing: the command sees the server's uid first and starts the run cold, in its own process."""
    require_root()
    folder = Path(tempfile.mkdtemp(prefix="lfs-", dir="/tmp"))
    os.chown(folder, OTHER_UID, OTHER_GID)
    path = folder / "s.sock"

    def listen_and_record(report):
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(path))
        listener.listen(1)
        listener.settimeout(60)
        report("listening")
        conn, _ = listener.accept()
        conn.settimeout(30)
        received = b""
        while chunk := conn.recv(65536):  # everything the client sends, until it closes
            received += chunk
        return {"client_uid": peer_credentials(conn)[1], "received": received.decode(errors="replace")}

    impostor = AsOtherUser(listen_and_record)
    try:
        assert impostor.next_message() == "listening"
        done = run_client(path, "report", "0", TARGET_MARKER="the-worker-credentials")
        recorded = impostor.result()
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    assert recorded == {"client_uid": 0, "received": ""}  # it connected, looked, and sent nothing
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["ppid"], report["marker"]) == (os.getpid(), "the-worker-credentials")  # ran cold, itself
    assert f"starting cold (the fork server at {path} (pid {impostor.pid}) runs as uid {OTHER_UID}, not as this " \
           "worker's uid 0: it is not handed this run's environment)" in done.stderr


def test_a_loose_socket_folder_of_its_own_is_made_private():
    started = Server(preload=[TARGET], socket_folder_mode=0o755)  # e.g. made first by a tool with umask 022
    try:
        assert stat.S_IMODE(started.socket.parent.stat().st_mode) == 0o700
        assert f"socket folder {started.socket.parent} had mode 0755: set to 0700" in started.output()
    finally:
        started.stop()


def test_a_socket_folder_of_another_user_or_shared_by_everyone_is_refused(tmp_path):
    require_root()
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, OTHER_UID, OTHER_GID)
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # as /tmp is

    with pytest.raises(RuntimeError, match=f"belongs to uid {OTHER_UID}, not to this server's uid 0"):
        ForkServer(theirs / "s.sock").serve()
    with pytest.raises(RuntimeError, match="writable by everyone"):
        ForkServer(shared / "s.sock").serve()
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777  # left as it was
    assert list(theirs.iterdir()) == []
