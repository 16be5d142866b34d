"""Every end-to-end test, again and again: the suite's timing-dependent tests run ``--count`` times in a row,
each round a whole pytest session as CI runs it (two xdist workers, fresh session stacks), until a round
fails. Prints one row per test: rounds passed in a row, failures, and its median and slowest time.

    .venv/bin/python tests/reliability/soak.py --count 20            # `make soak COUNT=20`: hours
    .venv/bin/python tests/reliability/soak.py --count 3 -- tests/e2e/test_promote.py

Every e2e-marked test waits on something real (a flow run's state, an event, a worker's poll, a lease),
so all of them are in; a round that fails keeps its output in ``<out>/round-N.log``. A failure is never
retried: the table shows it, and the loop stops there.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "tests") not in sys.path:  # run as a script: import the suite's modules as its sessions do
    sys.path.insert(0, str(ROOT / "tests"))
from reliability.table import aligned  # noqa: E402


def run_round(number: int, out: Path, selection: list[str], workers: int = 2) -> tuple[bool, dict[str, tuple[str, float]]]:
    """One pytest session; (passed, {test id: (outcome, seconds)})."""
    report = out / f"round-{number}.xml"
    command = [sys.executable, "-m", "pytest", "-n", str(workers), "--dist", "loadfile", "-m", "e2e", "-q", "-p", "no:cacheprovider",
               f"--junitxml={report}", *selection]
    with (out / f"round-{number}.log").open("w") as log:
        done = subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603 - fixed argv
    outcomes = {}
    if report.exists():
        for case in ET.parse(report).getroot().iter("testcase"):
            test = f"{case.get('classname', '')}::{case.get('name', '')}"
            failed = case.find("failure") is not None or case.find("error") is not None
            skipped = case.find("skipped") is not None
            outcomes[test] = ("failed" if failed else "skipped" if skipped else "passed", float(case.get("time", 0)))
    return done.returncode == 0 and bool(outcomes), outcomes


def table(rounds: list[dict[str, tuple[str, float]]]) -> str:
    tests = sorted({test for outcomes in rounds for test in outcomes})
    rows = [("test", "passed in a row", "failed", "median s", "max s")]
    for test in tests:
        seen = [r[test] for r in rounds if test in r]
        streak = 0
        for outcome, _ in reversed(seen):
            if outcome != "passed":
                break
            streak += 1
        seconds = [s for _, s in seen]
        rows.append((test, f"{streak} of {len(seen)}", str(sum(o == "failed" for o, _ in seen)),
                     f"{statistics.median(seconds):.1f}", f"{max(seconds):.1f}"))
    return "\n".join(aligned(rows, right_from=1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2,
                        help="xdist workers (CI: 2; more load on the same cores makes every wait tighter)")
    parser.add_argument("--out", type=Path, default=ROOT / ".leanops" / "soak")
    parser.add_argument("selection", nargs="*", help="pytest paths or node ids after -- (default: the whole suite's e2e tests)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rounds = []
    for number in range(1, args.count + 1):
        started = time.monotonic()
        passed, outcomes = run_round(number, args.out, args.selection, args.workers)
        rounds.append(outcomes)
        print(f"round {number}/{args.count}: {'passed' if passed else 'FAILED'}, {len(outcomes)} tests, "
              f"{time.monotonic() - started:.0f} s", flush=True)
        if not passed:
            print(f"stopped: see {args.out / f'round-{number}.log'}", flush=True)
            break
    print(f"\n{table(rounds)}\n")
    print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    return 0 if len(rounds) == args.count and all(o == "passed" for r in rounds for o, _ in r.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
