"""Keep a command running: start it again whenever it exits, until this process is told to stop.

``python -m infra.respawn -- prefect worker start ...``. Why the worker needs it: a Prefect 3.9 worker
gives up when its server does not answer for a while. Its poll loop allows 3 failed polls in a row, then
doubles its interval, and exits ("Service exceeded error threshold") after 4 such rounds: with the
stack's 1 s polls (PREFECT_WORKER_QUERY_SECONDS=1) that is ~20 s of server downtime, less than a Prefect
server restart takes on a busy machine. Without this, every run scheduled after the restart would wait for
a person to notice that no worker runs.

SIGTERM / SIGINT stop the command (forwarded) and this loop (exit code 0); the stack stops the whole
process group anyway.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

MAX_DELAY_SECONDS = 30.0


def run(argv: list[str]) -> int:
    stopping = False
    child: subprocess.Popen | None = None

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    delay = 0.5
    while True:
        started = time.monotonic()
        child = subprocess.Popen(argv)  # noqa: S603 - our own command line
        code = child.wait()
        if stopping:  # a stop was asked for: a clean exit, whatever the command said on the way out
            return 0
        # A command that ran a while before failing starts again at once; one that keeps failing backs off.
        delay = 1.0 if time.monotonic() - started > 60 else min(delay * 2, MAX_DELAY_SECONDS)
        print(f"respawn: {argv[0]} exited with code {code}; starting it again in {delay:.0f} s", file=sys.stderr, flush=True)
        time.sleep(delay)
        if stopping:
            return 0


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--"]:
        args = args[1:]
    if not args:
        print("usage: python -m infra.respawn -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
