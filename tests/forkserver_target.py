"""Run by the fork server tests in place of ``prefect.engine``: reports what its process sees.

    python -m forkserver_target report [exit code]   stdin -> one JSON line on stdout; a line on stderr
    python -m forkserver_target sleep                prints its pid, then sleeps (to be signalled)
    python -m forkserver_target prefect-api-url      the API URL Prefect's settings resolve to
    python -m forkserver_target specs-dir            the specs folder leanops' settings resolve to
    python -m forkserver_target random               a draw from random's and numpy's global generators
    python -m forkserver_target frozen               how many objects the garbage collector leaves alone
"""

import json
import os
import sys
import time


def main() -> None:
    action = sys.argv[1]
    if action == "report":
        print(json.dumps({
            "pid": os.getpid(), "ppid": os.getppid(), "cwd": os.getcwd(), "argv": sys.argv[1:],
            "marker": os.environ.get("TARGET_MARKER"), "stdin": sys.stdin.read(),
        }))
        print("a line on stderr", file=sys.stderr)
        sys.exit(int(sys.argv[2]) if len(sys.argv) > 2 else 0)
    if action == "sleep":
        print(os.getpid(), flush=True)
        time.sleep(120)
    if action == "prefect-api-url":
        from prefect.settings import get_current_settings

        print(get_current_settings().api.url)
    if action == "frozen":
        import gc

        print(gc.get_freeze_count())
    if action == "random":
        import random

        import numpy

        print(random.random(), numpy.random.random())
    if action == "specs-dir":
        from leanops.settings import get_settings

        print(get_settings().specs_dir)


if __name__ == "__main__":
    main()
