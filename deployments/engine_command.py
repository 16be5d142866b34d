"""The work pool's flow-run command: run ``prefect.engine`` in a process forked from the warm fork server.

A process worker starts one command per flow run, by default ``python -m prefect.engine``, which
imports Prefect and then the flow's libraries before it can report the run Running: 4-10 s on a
2-core machine, most of the S3 put -> Running latency. This command starts in a few milliseconds: it
hands its standard streams (as file descriptors), environment, working directory and arguments to the
fork server (``deployments/forkserver.py``), which forks a child that has Prefect, pandas, sklearn,
MLflow... already imported; the child runs ``prefect.engine`` as ``__main__``, exactly as the cold
command would. This process stays the worker's handle on the run: it forwards SIGTERM / SIGINT to the
child and exits as the child did, so the worker's cancellation and crash reporting work unchanged.

With no fork server (``LEANOPS_FORK_SERVER_SOCKET`` unset, nothing listening, or the request
refused) it *becomes* the cold command (``exec python -m prefect.engine``): the warm path is an
optimisation, never a dependency. The same happens when the process listening on the socket runs as
another user (checked with SO_PEERCRED before anything is sent): the environment holds the worker's
credentials, and only a server of this process's own uid is handed it. The server checks the command's
uid the same way.

Usage: ``python -m deployments.engine_command [--module M] [args...]`` (M defaults to prefect.engine).
Standard library only, and this module is imported alone: it must start fast.
"""

from __future__ import annotations

import array
import json
import os
import signal
import socket
import struct
import sys
from typing import Any, NoReturn

SOCKET_ENV = "LEANOPS_FORK_SERVER_SOCKET"
DEFAULT_MODULE = "prefect.engine"
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
STANDARD_STREAMS = (0, 1, 2)
_HEADER = struct.Struct("!I")
MAX_FRAME_BYTES = 16 * 1024 * 1024
_PEER_CREDENTIALS = struct.Struct("3i")  # struct ucred: pid, uid, gid


class ProtocolError(Exception):
    """The other side sent something that is not a frame of this protocol."""


class ColdStart(Exception):  # noqa: N818 - it is an outcome, not a failure: the run starts cold
    """The fork server did not take the run, and nothing was started: the reason is the message."""


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end of a connected Unix socket, as the kernel recorded
    them when it connected (a client) or listened (a server): the peer cannot forge them."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEER_CREDENTIALS.size)
    pid, uid, gid = _PEER_CREDENTIALS.unpack(raw)
    return pid, uid, gid


# --- framing, shared with the server: a 4-byte length, then that many bytes of JSON ----------------


def send_frame(sock: socket.socket, message: dict[str, Any], fds: tuple[int, ...] = ()) -> None:
    body = json.dumps(message).encode()
    data = _HEADER.pack(len(body)) + body
    if fds:
        # The descriptors ride on the first chunk; the rest of a long frame follows as plain bytes.
        sent = sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
        data = data[sent:]
    if data:
        sock.sendall(data)


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise EOFError("connection closed mid-frame" if chunks else "connection closed")
        chunks += chunk
    return bytes(chunks)


def recv_frame(sock: socket.socket, max_fds: int = 0) -> tuple[dict[str, Any], list[int]]:
    """One frame and the file descriptors that came with it (the caller owns and closes them)."""
    fds: list[int] = []
    if max_fds:
        space = socket.CMSG_SPACE(max_fds * array.array("i").itemsize)
        header, ancillary, _flags, _addr = sock.recvmsg(_HEADER.size, space)
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                received = array.array("i")
                received.frombytes(payload[: len(payload) - len(payload) % received.itemsize])
                fds.extend(received)
        if not header:
            raise EOFError("connection closed")
        header += _recv_exactly(sock, _HEADER.size - len(header))
    else:
        header = _recv_exactly(sock, _HEADER.size)
    (size,) = _HEADER.unpack(header)
    if size > MAX_FRAME_BYTES:
        for fd in fds:
            os.close(fd)
        raise ProtocolError(f"frame of {size} bytes exceeds {MAX_FRAME_BYTES}")
    try:
        message = json.loads(_recv_exactly(sock, size))
    except (EOFError, ValueError) as exc:
        for fd in fds:
            os.close(fd)
        raise ProtocolError(f"unreadable frame: {exc}") from exc
    if not isinstance(message, dict):
        raise ProtocolError("a frame must hold a JSON object")
    return message, fds


# --- the client ------------------------------------------------------------------------------------


def _parse(argv: list[str]) -> tuple[str, list[str]]:
    if len(argv) >= 2 and argv[0] == "--module":
        return argv[1], argv[2:]
    return DEFAULT_MODULE, argv


def _cold(module: str, args: list[str], why: str) -> NoReturn:
    """Become ``python -m <module> args``: the same process id, so the worker notices nothing."""
    print(f"engine_command: starting cold ({why})", file=sys.stderr, flush=True)
    os.execv(sys.executable, [sys.executable, "-m", module, *args])


def _exit_like(returncode: int) -> None:
    if returncode < 0:
        # Die of the same signal, so the worker sees what it would have seen from a cold process.
        signal.signal(-returncode, signal.SIG_DFL)
        os.kill(os.getpid(), -returncode)
    sys.exit(returncode if returncode >= 0 else 1)


def run_warm(socket_path: str, module: str, args: list[str]) -> int:
    """The child's return code; raises ColdStart if the fork server could not take the run (nothing started)."""
    child: dict[str, int] = {}
    pending: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        if "pid" in child:
            try:
                os.kill(child["pid"], signum)
            except ProcessLookupError:
                pass
        else:
            pending.append(signum)

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(socket_path)
    except OSError as exc:
        sock.close()
        raise ColdStart(f"no fork server answered at {socket_path}: {exc}") from exc
    with sock:
        server_pid, server_uid, _gid = peer_credentials(sock)
        if server_uid != os.geteuid():
            raise ColdStart(f"the fork server at {socket_path} (pid {server_pid}) runs as uid {server_uid}, not as "
                            f"this worker's uid {os.geteuid()}: it is not handed this run's environment")
        request = {"module": module, "args": args, "env": dict(os.environ), "cwd": os.getcwd()}
        try:
            send_frame(sock, request, fds=STANDARD_STREAMS)
            for signum in FORWARDED_SIGNALS:
                signal.signal(signum, forward)
            answer, _ = recv_frame(sock)
        except (OSError, EOFError, ProtocolError) as exc:
            raise ColdStart(f"the fork server at {socket_path} did not take the run: {exc}") from exc
        if "pid" not in answer:
            raise ColdStart(f"fork server refused the run: {answer.get('error')}")
        child["pid"] = int(answer["pid"])
        for signum in pending:
            forward(signum, None)
        try:
            outcome, _ = recv_frame(sock)
        except (OSError, EOFError, ProtocolError) as exc:
            # The server went away; it takes its children with it (same process group).
            print(f"engine_command: lost the fork server while pid {child['pid']} ran: {exc}", file=sys.stderr, flush=True)
            return 1
        return int(outcome["returncode"])


def probe(socket_path: str, timeout: float = 5.0) -> int:
    """The fork server's pid, if one answers at ``socket_path`` within ``timeout`` seconds (it forks nothing
    for a ping). OSError otherwise: no socket, nobody listening, no answer in time, or not a fork server."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(socket_path)
        server_pid, server_uid, _gid = peer_credentials(sock)
        if server_uid != os.geteuid():  # it would refuse this user, and this user's runs would start cold
            raise OSError(f"the fork server (pid {server_pid}) runs as uid {server_uid}, not as this user's "
                          f"uid {os.geteuid()}: run it as the worker's user")
        send_frame(sock, {"ping": True})
        try:
            answer, _ = recv_frame(sock)
        except (EOFError, ProtocolError) as exc:
            raise OSError(f"not a fork server's answer: {exc}") from exc
    if "pong" not in answer:
        raise OSError(f"not a fork server's answer: {answer}")
    return int(answer["pong"])


def main(argv: list[str] | None = None) -> None:
    module, args = _parse(sys.argv[1:] if argv is None else argv)
    socket_path = os.environ.get(SOCKET_ENV)
    if not socket_path:
        _cold(module, args, f"{SOCKET_ENV} is not set")
    try:
        returncode = run_warm(socket_path, module, args)
    except ColdStart as why:
        _cold(module, args, str(why))
    _exit_like(returncode)


if __name__ == "__main__":
    main()
