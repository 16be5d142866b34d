"""The fork server: a long-lived process with Prefect and the ML libraries imported, forking one child per
flow run so a run reaches Running without paying those imports (see ``deployments/engine_command.py``).

    python -m deployments.forkserver [--socket PATH] [--heartbeat FILE]

It preloads ``LEANOPS_FORK_SERVER_PRELOAD`` (third-party libraries only: leanops' own modules, the
flows and the tasks are imported by each child from the run's working directory, so a changed or
freshly pulled flow is never served from a stale copy), then listens on a Unix socket (mode 0600) in a folder only its own user can enter (0700: the server
creates it, tightens the mode of one of its own, and refuses to start in a folder another user owns).
It serves only clients of its own uid, checked with SO_PEERCRED on each connection: whoever it serves
runs code as this user. Per request it receives the client's stdin/stdout/stderr descriptors, environment, working directory
and arguments, forks, answers the child's pid and later its return code. The child takes over the
client's streams, environment and directory, refreshes Prefect's settings and logging from that
environment, and runs the module (only ``prefect.engine`` is accepted) as ``__main__``. A ping
(``{"ping": true}`` without descriptors, sent by ``engine_command.probe`` for ``leanops doctor``) is
answered with the server's pid, and nothing is forked.

The server is single-threaded on purpose: forking a process with other threads running can copy a
lock held by one of them and deadlock the child. If the client disappears (killed by its worker), the
child is sent SIGTERM, then SIGKILL after a grace period. Restart the server after upgrading packages:
children inherit the versions it imported.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import logging
import os
import runpy
import selectors
import signal
import socket
import stat
import sys
import threading
import time
import warnings
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from deployments.engine_command import (
    DEFAULT_MODULE,
    STANDARD_STREAMS,
    ProtocolError,
    peer_credentials,
    recv_frame,
    send_frame,
)

log = logging.getLogger("leanops.forkserver")

# Longest path a Unix socket address can hold on Linux (sun_path is 108 bytes, NUL-terminated).
MAX_SOCKET_PATH_BYTES = 107
REQUEST_READ_TIMEOUT_SECONDS = 5.0
# This project's own packages: a child drops whatever the server imported of them (e.g. the settings it
# read, cached from the server's environment) and imports them afresh from the run's code and environment.
PROJECT_PACKAGES = frozenset({"leanops", "flows", "tasks", "deployments", "infra"})
HEARTBEAT_EVERY_SECONDS = 5.0
SOCKET_FOLDER_MODE = 0o700


@dataclass(frozen=True)
class RunRequest:
    module: str
    args: list[str]
    env: dict[str, str]
    cwd: str


def _private_folder(folder: Path) -> None:
    """Make ``folder`` a directory only this user can enter: created 0700, or an existing one of ours set
    to 0700. An existing folder of another owner (or a symlink) is refused: its owner could swap the socket;
    so is a folder everyone may write to (/tmp): it is shared, and 0700 would lock the others out.

    A looser folder of our own is tightened rather than refused: only this user (or root) can have set its
    mode, so fixing it takes nothing from anyone, while refusing would stop the server wherever a tool made
    the folder first with its umask (the stack's pid files in ``<home>/run``, a container volume). What may
    have been put in it meanwhile does not matter to the server: it replaces a stale socket, refuses to
    start if something answers there, and clients check the server's uid themselves."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        folder.mkdir(mode=SOCKET_FOLDER_MODE)
    except FileExistsError:
        pass
    try:
        # O_NOFOLLOW: the checks and the chmod below apply to this folder, not to where a symlink points.
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as exc:
        raise RuntimeError(f"fork server socket folder {folder} is not a directory of its own: {exc}") from exc
    try:
        info = os.fstat(fd)
        if info.st_uid != os.geteuid():
            raise RuntimeError(f"fork server socket folder {folder} belongs to uid {info.st_uid}, not to this "
                               f"server's uid {os.geteuid()}: its owner could replace the socket. Remove it, "
                               "or point LEANOPS_FORK_SERVER_SOCKET into a folder of this user")
        mode = stat.S_IMODE(info.st_mode)
        if mode & (stat.S_ISVTX | stat.S_IWOTH):
            # A folder anyone may write to is shared (/tmp, /dev/shm...): tightening it would break others.
            raise RuntimeError(f"fork server socket folder {folder} is writable by everyone (mode {mode:04o}), a "
                               "shared folder such as /tmp: point LEANOPS_FORK_SERVER_SOCKET into a folder of its "
                               "own (e.g. <LEANOPS_HOME>/run/forkserver.sock), which the server makes 0700")
        if mode != SOCKET_FOLDER_MODE:
            os.fchmod(fd, SOCKET_FOLDER_MODE)
            log.warning("fork server socket folder %s had mode %04o: set to %04o (only its user may enter)",
                        folder, mode, SOCKET_FOLDER_MODE)
    finally:
        os.close(fd)


def _bind(path: Path) -> socket.socket:
    if len(os.fsencode(path)) > MAX_SOCKET_PATH_BYTES:
        raise ValueError(f"fork server socket path is {len(os.fsencode(path))} bytes, Unix sockets allow "
                         f"{MAX_SOCKET_PATH_BYTES}: set LEANOPS_FORK_SERVER_SOCKET to a shorter path ({path})")
    _private_folder(path.parent)
    if path.exists():
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()  # left by a server that died: nobody answers there
        else:
            raise RuntimeError(f"another fork server already listens on {path}")
        finally:
            probe.close()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)  # the socket is born 0600: whoever connects runs code as this user
    try:
        listener.bind(str(path))
    finally:
        os.umask(old_umask)
    listener.listen(64)
    listener.setblocking(False)
    return listener


class ForkServer:
    def __init__(
        self,
        socket_path: Path,
        runnable_modules: Collection[str] = (DEFAULT_MODULE,),
        heartbeat_file: Path | None = None,
        kill_grace_seconds: float = 10.0,
    ) -> None:
        self.socket_path = Path(socket_path)
        self.runnable_modules = frozenset(runnable_modules)
        self.heartbeat_file = heartbeat_file
        self.kill_grace_seconds = kill_grace_seconds
        self._children: dict[int, socket.socket] = {}  # child pid -> its client's connection
        self._kill_at: dict[int, float] = {}  # child pid -> when to SIGKILL (its client has gone)
        self._stopping = False
        self._selector: selectors.BaseSelector | None = None

    # --- before serving ----------------------------------------------------------------------------

    def preload(self, modules: Sequence[str]) -> list[tuple[str, float]]:
        """Import ``modules``; returns (module, seconds) each. A module that fails to import is logged
        and skipped: its children import it themselves, as a cold start would."""
        timings = []
        for name in modules:
            started = time.perf_counter()
            try:
                importlib.import_module(name)
            except Exception as exc:  # noqa: BLE001 - an optional speed-up must not stop the server
                log.warning("preload of %s failed, children import it themselves: %s", name, exc)
                continue
            timings.append((name, time.perf_counter() - started))
        # Without this, every full collection in a child walks the half-million preloaded objects: creating
        # one boto3 client in a child took 0.41 s of CPU, 0.065 s frozen; frozen objects' pages also stay
        # shared with the children rather than being copied when the collector touches their headers.
        gc.collect()
        gc.freeze()
        if threading.active_count() > 1:
            # Forking now could copy a lock held by another thread into every child.
            names = [thread.name for thread in threading.enumerate() if thread is not threading.main_thread()]
            raise RuntimeError(f"preloading started threads {names}; a fork server must stay single-threaded")
        return timings

    # --- the loop ------------------------------------------------------------------------------------

    def serve(self) -> RunRequest | None:
        """Serve until SIGTERM / SIGINT (then returns None), or return a request: in a forked child only."""
        listener = _bind(self.socket_path)
        wake_read, wake_write = socket.socketpair()
        wake_read.setblocking(False)
        wake_write.setblocking(False)
        selector = self._selector = selectors.DefaultSelector()
        selector.register(listener, selectors.EVENT_READ, "accept")
        selector.register(wake_read, selectors.EVENT_READ, "wake")
        server_pid = os.getpid()

        def stop(_signum: int, _frame: object) -> None:
            self._stopping = True

        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        # A no-op handler makes SIGCHLD write to the wakeup socket: exits are reported at once.
        previous[signal.SIGCHLD] = signal.signal(signal.SIGCHLD, lambda *_: None)
        previous_wakeup = signal.set_wakeup_fd(wake_write.fileno(), warn_on_full_buffer=False)
        log.info("fork server pid %d listening on %s", server_pid, self.socket_path)
        last_heartbeat = 0.0
        try:
            while not self._stopping:
                if time.monotonic() - last_heartbeat >= HEARTBEAT_EVERY_SECONDS:
                    self._touch_heartbeat()
                    last_heartbeat = time.monotonic()
                for key, _events in selector.select(timeout=1.0):
                    if key.data == "wake":
                        try:
                            while wake_read.recv(512):
                                pass
                        except BlockingIOError:
                            pass
                    elif key.data == "accept":
                        request = self._accept(listener, selector)
                        if request is not None:  # we are the child now
                            for sig, handler in previous.items():
                                signal.signal(sig, handler)
                            signal.set_wakeup_fd(-1)
                            for sock in (listener, wake_read, wake_write):
                                sock.close()
                            selector.close()
                            return request
                    else:
                        self._client_readable(key.fileobj, key.data, selector)
                self._reap()
                self._kill_overdue()
            return None
        finally:
            if os.getpid() == server_pid:
                self._shutdown(selector)
                signal.set_wakeup_fd(previous_wakeup)
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
                for sock in (listener, wake_read, wake_write):
                    sock.close()
                selector.close()
                self.socket_path.unlink(missing_ok=True)

    def _accept(self, listener: socket.socket, selector: selectors.BaseSelector) -> RunRequest | None:
        try:
            conn, _ = listener.accept()
        except BlockingIOError:
            return None
        conn.setblocking(True)
        conn.settimeout(REQUEST_READ_TIMEOUT_SECONDS)
        peer_pid, peer_uid, peer_gid = peer_credentials(conn)
        if peer_uid != os.geteuid():
            # Refused before reading anything: its request (and the descriptors in it) is never received.
            log.warning("refused a connection from pid %d (uid %d, gid %d): this server serves uid %d only",
                        peer_pid, peer_uid, peer_gid, os.geteuid())
            try:
                send_frame(conn, {"error": f"this fork server serves uid {os.geteuid()} only, not uid {peer_uid}"})
            except OSError:
                pass
            conn.close()
            return None
        fds: list[int] = []
        try:
            message, fds = recv_frame(conn, max_fds=len(STANDARD_STREAMS))
            if message.get("ping") is True and not fds:  # leanops doctor asks whether we answer
                send_frame(conn, {"pong": os.getpid()})
                conn.close()
                return None
            request = self._validate(message, fds)
        except (OSError, EOFError, ProtocolError, ValueError) as exc:
            log.warning("refused a request: %s", exc)
            try:
                send_frame(conn, {"error": str(exc)})
            except OSError:
                pass
            conn.close()
            for fd in fds:
                os.close(fd)
            return None
        for stream in (sys.stdout, sys.stderr):
            stream.flush()  # or the child would write this process's buffered lines a second time
        pid = os.fork()
        if pid == 0:
            # The child: only the client's streams survive; the server's sockets close in serve().
            for key in list(selector.get_map().values()):
                if key.data not in ("accept", "wake"):
                    key.fileobj.close()
            conn.close()
            for target, fd in zip(STANDARD_STREAMS, fds, strict=True):
                if fd != target:
                    os.dup2(fd, target)
                    os.close(fd)
            return request
        for fd in fds:
            os.close(fd)
        self._children[pid] = conn
        try:
            send_frame(conn, {"pid": pid})
        except OSError:
            self._client_gone(pid)  # the client vanished already: do not leave its run behind
        conn.settimeout(None)
        conn.setblocking(False)
        selector.register(conn, selectors.EVENT_READ, pid)
        log.info("forked pid %d: %s %s (flow run %s)", pid, request.module, " ".join(request.args),
                 request.env.get("PREFECT__FLOW_RUN_ID", "-"))
        return None

    def _validate(self, message: dict, fds: list[int]) -> RunRequest:
        if len(fds) != len(STANDARD_STREAMS):
            raise ValueError(f"expected the {len(STANDARD_STREAMS)} standard stream descriptors, got {len(fds)}")
        module = message.get("module")
        if module not in self.runnable_modules:
            raise ValueError(f"module {module!r} is not runnable here (allowed: {sorted(self.runnable_modules)})")
        args, env, cwd = message.get("args"), message.get("env"), message.get("cwd")
        if not (isinstance(args, list) and all(isinstance(arg, str) for arg in args)):
            raise ValueError("args must be a list of strings")
        if not (isinstance(env, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())):
            raise ValueError("env must map strings to strings")
        if not (isinstance(cwd, str) and os.path.isdir(cwd)):
            raise ValueError(f"working directory {cwd!r} does not exist")
        return RunRequest(module=module, args=args, env=env, cwd=cwd)

    def _client_readable(self, conn: socket.socket, pid: int, selector: selectors.BaseSelector) -> None:
        try:
            data = conn.recv(64)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # the client has gone: its worker killed it, or it crashed
            selector.unregister(conn)
            self._client_gone(pid)

    def _client_gone(self, pid: int) -> None:
        if pid in self._kill_at or pid not in self._children:
            return
        log.warning("client of pid %d has gone: terminating the run", pid)
        self._signal(pid, signal.SIGTERM)
        self._kill_at[pid] = time.monotonic() + self.kill_grace_seconds

    def _reap(self) -> None:
        while self._children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self._children.pop(pid, None)
            self._kill_at.pop(pid, None)
            returncode = os.waitstatus_to_exitcode(status)  # as Popen.returncode: -N if killed by signal N
            log.info("pid %d exited with %d", pid, returncode)
            if conn is None:
                continue
            try:
                conn.setblocking(True)
                conn.settimeout(REQUEST_READ_TIMEOUT_SECONDS)
                send_frame(conn, {"returncode": returncode})
            except OSError:
                pass  # its client is gone; nobody to tell
            if self._selector is not None:
                try:
                    self._selector.unregister(conn)
                except KeyError:
                    pass  # unregistered when its client went away
            conn.close()

    def _kill_overdue(self) -> None:
        now = time.monotonic()
        for pid, deadline in list(self._kill_at.items()):
            if now >= deadline:
                self._signal(pid, signal.SIGKILL)
                self._kill_at[pid] = float("inf")

    def _signal(self, pid: int, signum: int) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    def _shutdown(self, selector: selectors.BaseSelector) -> None:
        """Stop the runs still going (as a stopped worker would) and tell their clients how they ended."""
        for pid in list(self._children):
            self._signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.kill_grace_seconds
        while self._children and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.1)
        for pid in list(self._children):
            self._signal(pid, signal.SIGKILL)
        while self._children:
            self._reap()
            time.sleep(0.05)

    def _touch_heartbeat(self) -> None:
        if self.heartbeat_file is not None:
            self.heartbeat_file.parent.mkdir(parents=True, exist_ok=True)
            self.heartbeat_file.touch()


# --- in the child ----------------------------------------------------------------------------------


def become(request: RunRequest) -> None:
    """Take on the client's identity: environment, directory, argv, and Prefect settings read from them."""
    os.chdir(request.cwd)
    os.environ.clear()
    os.environ.update(request.env)
    sys.argv = [request.module, *request.args]
    sys.path[0] = request.cwd  # as `python -m` run from that directory would have it
    for name in [name for name in sys.modules if name.partition(".")[0] in PROJECT_PACKAGES]:
        del sys.modules[name]
    if "prefect.context" in sys.modules:
        # Prefect read its settings and set up logging when the server imported it, from the server's
        # environment; the run must see the worker's (API URL, logging level, job variables...).
        from prefect.context import refresh_global_settings_context
        from prefect.logging.configuration import setup_logging

        refresh_global_settings_context()
        setup_logging(incremental=False)


def run_as_main(request: RunRequest) -> None:
    become(request)
    with warnings.catch_warnings():
        # The module was preloaded, so runpy warns that it is already in sys.modules: expected here.
        warnings.filterwarnings("ignore", message=r".*found in sys\.modules.*", category=RuntimeWarning)
        runpy.run_module(request.module, run_name="__main__", alter_sys=True)


def main(argv: list[str] | None = None) -> int:
    from leanops.settings import get_settings

    settings = get_settings()
    parser = argparse.ArgumentParser(prog="python -m deployments.forkserver", description=__doc__.split("\n\n")[0])
    parser.add_argument("--socket", type=Path, default=settings.resolved_fork_server_socket)
    parser.add_argument("--heartbeat", type=Path, default=None, help="file touched while the server serves")
    parser.add_argument("--runnable", action="append", default=None, help="module a request may run (repeatable)")
    args = parser.parse_args(argv)

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False

    server = ForkServer(args.socket, runnable_modules=args.runnable or (DEFAULT_MODULE,), heartbeat_file=args.heartbeat)
    started = time.perf_counter()
    timings = server.preload(settings.fork_server_preload)
    log.info("preloaded %d modules in %.1f s: %s", len(timings), time.perf_counter() - started,
             ", ".join(f"{name} {seconds:.1f}s" for name, seconds in timings))
    request = server.serve()
    if request is None:
        return 0
    run_as_main(request)  # the child: this returns (or raises SystemExit) as the run's own process would
    return 0


if __name__ == "__main__":
    sys.exit(main())
