"""Every end-to-end test, again and again: the suite's timing-dependent tests run ``--count`` times in a row,
each round a whole pytest session as CI runs it (two xdist workers, fresh session stacks), until a round
fails. Prints one row per test: rounds passed in a row, failures, and its median and slowest time.

    .venv/bin/python tests/reliability/soak.py --count 20            # `make soak COUNT=20`: hours
    .venv/bin/python tests/reliability/soak.py --count 3 -- tests/e2e/test_promote.py

Every e2e-marked test waits on something real (a flow run's state, an event, a worker's poll, a lease),
so all of them are in; a round that fails keeps its output in ``<out>/round-N.log``. A failure is never
retried: the table shows it, and the loop stops there.

Twenty rounds take longer than one working session here (~13 minutes a round), so rounds are recorded
(``--record``, committed with the code) and ``--resume`` goes on from the recorded rounds, but only while
the code is exactly the code they ran: the record holds a hash of every tracked file the tests can
exercise (all but bench/, sim/ and the prose), and a checkout where one differs (or has uncommitted
changes) starts a new streak. ``--stop-by HH:MM`` starts no
round that would not end by then.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime, timedelta
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "tests") not in sys.path:  # run as a script: import the suite's modules as its sessions do
    sys.path.insert(0, str(ROOT / "tests"))
from reliability.table import aligned  # noqa: E402


# How much of a failed test's report the record keeps: its assertion message and the end of its traceback.
FAILURE_CHARS = 4000


def run_round(number: int, out: Path, selection: list[str], workers: int = 2) -> tuple[bool | None, dict[str, tuple[str, float]], dict[str, str]]:
    """One pytest session; (passed, {test id: (outcome, seconds)}, {failed test id: its report}). ``passed``
    is None when the session was killed by a signal before it wrote its report: an interrupted round, which
    says nothing of the tests. The reports go into the record because a round's log may not outlive the
    machine it ran on, and a flaky failure is diagnosed from what it printed."""
    report = out / f"round-{number}.xml"
    command = [sys.executable, "-m", "pytest", "-n", str(workers), "--dist", "loadfile", "-m", "e2e", "-q", "-p", "no:cacheprovider",
               f"--junitxml={report}", *selection]
    with (out / f"round-{number}.log").open("w") as log:
        done = subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603 - fixed argv
    outcomes, failures = {}, {}
    if done.returncode < 0 and not report.exists():
        return None, outcomes, failures
    if report.exists():
        for case in ET.parse(report).getroot().iter("testcase"):
            test = f"{case.get('classname', '')}::{case.get('name', '')}"
            failed = case.find("failure") is not None or case.find("error") is not None
            skipped = case.find("skipped") is not None
            outcomes[test] = ("failed" if failed else "skipped" if skipped else "passed", float(case.get("time", 0)))
            for problem in (case.find("failure"), case.find("error")):
                if problem is not None:
                    text = f"{problem.get('message', '')}\n{problem.text or ''}"
                    failures[test] = failures.get(test, "") + (text if len(text) <= FAILURE_CHARS else text[: FAILURE_CHARS // 2] + "\n...\n" + text[-FAILURE_CHARS // 2:])
    return done.returncode == 0 and bool(outcomes), outcomes, failures


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


DEFAULT_RECORD = ROOT / "docs" / "soak-record.json"


# Files no e2e test reads or runs: the benchmarks, the simulator and the prose (docs/runbook.md is run by
# tests/reliability/test_runbook.py, so it counts). Work on these does not restart a streak.
NOT_EXERCISED = ("bench/", "sim/", "docs/", "README.md")
EXERCISED_DOCS = ("docs/runbook.md",)


def exercised(path: str) -> bool:
    return path in EXERCISED_DOCS or not path.startswith(NOT_EXERCISED)


def code_identity(record: Path) -> str | None:
    """A hash of every tracked file the e2e tests can exercise (see NOT_EXERCISED), or None when such a
    file has changes git does not hold (then no round can be said to have run a commit)."""
    git = lambda *a: subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True, check=True).stdout  # noqa: E731
    changed = [line for line in git("status", "--porcelain", "--untracked-files=no").splitlines() if exercised(line[3:])]
    if changed:
        return None
    files = [line for line in git("ls-files", "-s").splitlines() if exercised(line.split("\t", 1)[1])]
    return hashlib.sha256("\n".join(files).encode()).hexdigest()


def load_record(record: Path, identity: str | None) -> tuple[list[dict[str, tuple[str, float]]], str]:
    """The recorded rounds of this very code, and why none are taken when they are not."""
    if identity is None:
        return [], "uncommitted changes: a new streak, recorded nowhere"
    if not record.exists():
        return [], f"no record at {record}: a new streak"
    saved = json.loads(record.read_text())
    if saved.get("code") != identity:
        return [], f"the record's rounds ran other code ({saved.get('commit', '?')[:10]}): a new streak"
    rounds = [{test: (outcome, seconds) for test, (outcome, seconds) in r["outcomes"].items()} for r in saved["rounds"]]
    if any(outcome == "failed" for r in rounds for outcome, _ in r.values()):
        return [], "the recorded streak ended in a failure: a new one"
    return rounds, f"resuming after {len(rounds)} recorded round(s) of this code"


def save_record(record: Path, identity: str, rounds: list[dict[str, tuple[str, float]]], stamps: list[dict]) -> None:
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    record.write_text(json.dumps({
        "code": identity, "commit": commit,
        "rounds": [{**stamp, "outcomes": {t: list(o) for t, o in outcomes.items()}} for stamp, outcomes in zip(stamps, rounds)],
    }, indent=1) + "\n")


def stop_by_time(clock: str, now: datetime) -> float:
    """The next HH:MM from now: a time already past today is tomorrow's (a soak started before midnight)."""
    moment = datetime.combine(now.date(), datetime.strptime(clock, "%H:%M").time())
    return (moment if moment > now else moment + timedelta(days=1)).timestamp()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2,
                        help="xdist workers (CI: 2; more load on the same cores makes every wait tighter)")
    parser.add_argument("--out", type=Path, default=ROOT / ".leanops" / "soak")
    parser.add_argument("--record", type=Path, default=DEFAULT_RECORD, help="where rounds of the whole e2e selection are recorded")
    parser.add_argument("--resume", action="store_true", help="go on from the recorded rounds if they ran this very code")
    parser.add_argument("--stop-by", help="HH:MM (the next one, tomorrow if already past): start no round that would end later (by the rounds' median)")
    parser.add_argument("selection", nargs="*", help="pytest paths or node ids after -- (default: the whole suite's e2e tests)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    recording = not args.selection  # a record is of the whole suite's e2e tests, never of a part
    identity = code_identity(args.record) if recording else None
    rounds, stamps = [], []
    if recording and args.resume:
        rounds, why = load_record(args.record, identity)
        stamps = json.loads(args.record.read_text())["rounds"][: len(rounds)] if rounds else []
        stamps = [{k: v for k, v in stamp.items() if k != "outcomes"} for stamp in stamps]
        print(why, flush=True)
    stop_by = stop_by_time(args.stop_by, datetime.now()) if args.stop_by else None
    while len(rounds) < args.count:
        number = len(rounds) + 1
        took = [stamp["seconds"] for stamp in stamps] or [0.0]
        if stop_by is not None and time.time() + statistics.median(took) > stop_by:
            print(f"stopping before round {number}: it would end after {args.stop_by}", flush=True)
            break
        started, began = time.monotonic(), datetime.now().isoformat(timespec="seconds")
        passed, outcomes, failures = run_round(number, args.out, args.selection, args.workers)
        if passed is None:
            print(f"round {number} interrupted (its pytest session was killed): not recorded", flush=True)
            break
        rounds.append(outcomes)
        stamps.append({"round": number, "started": began, "seconds": round(time.monotonic() - started), "passed": passed,
                       "load": round(os.getloadavg()[0], 2), **({"failures": failures} if failures else {})})
        if recording and identity is not None:
            save_record(args.record, identity, rounds, stamps)
        print(f"round {number}/{args.count}: {'passed' if passed else 'FAILED'}, {len(outcomes)} tests, "
              f"{stamps[-1]['seconds']} s", flush=True)
        if not passed:
            print(f"stopped: see {args.out / f'round-{number}.log'}", flush=True)
            break
    print(f"\n{table(rounds)}\n")
    print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    return 0 if len(rounds) == args.count and all(o == "passed" for r in rounds for o, _ in r.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
