"""Benchmark: taking a per-model lock right after a flow run, on a Prefect server backed by SQLite (the
embedded stack) and by PostgreSQL (the production profile).

Every lifecycle step that reads, decides and writes takes a per-model lock (``tasks._locks.model_lock``,
a Prefect global concurrency limit of one slot): the drift check's history append sits between its
verdict and ``leanops.drift.checked``. Each round here runs a small flow that persists a task result
and then takes the lock, as record_drift_check does, and times the acquisition. Both servers start
fresh (their own home, their own database) and are measured side by side: the backend measured first
alternates from round to round. Counted from the HTTP responses: how many acquisitions met a 503, which
Prefect's server sends when SQLite reports the database busy and its client answers with a fixed 2 s
backoff before trying again.

    .venv/bin/python bench/bench_lock.py --rounds 4 --flows 30

Needs PostgreSQL (LEANOPS_POSTGRES_URL, default postgresql://postgres@127.0.0.1:5432); nothing else.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHILD = r'''
import json, sys, time
import httpx
from prefect import flow, task
from tasks._locks import model_lock

statuses = []
_send = httpx.AsyncClient.send

async def _counted(self, request, *args, **kwargs):
    response = await _send(self, request, *args, **kwargs)
    if "increment-with-lease" in str(request.url):
        statuses.append(response.status_code)
    return response

httpx.AsyncClient.send = _counted

@task(persist_result=True)
def work(i):
    return list(range(10_000 + i))

@flow
def checked(i: int, model: str) -> tuple[float, list[int]]:
    work(i)
    statuses.clear()
    started = time.perf_counter()
    with model_lock(model, "drift-history"):
        took = time.perf_counter() - started
    return took, list(statuses)

model = f"bench-lock-{time.time_ns()}"
rows = [checked(i, model) for i in range(int(sys.argv[1]))]
print(json.dumps([[took, codes] for took, codes in rows]))
'''


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def measure(api_url: str, home: Path, flows: int) -> list[tuple[float, list[int]]]:
    env = {**os.environ, "PREFECT_API_URL": api_url, "PREFECT_HOME": str(home / "client"), "PREFECT_LOGGING_LEVEL": "WARNING",
           "PREFECT_LOCAL_STORAGE_PATH": str(home / "results"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", CHILD, str(flows)], env=env, capture_output=True, text=True, timeout=1800, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the measuring process failed:\n{done.stderr[-3000:]}")
    return [(took, codes) for took, codes in json.loads(done.stdout.strip().splitlines()[-1])]


async def _database(url: str, name: str, create: bool) -> None:
    import asyncpg

    connection = await asyncpg.connect(f"{url.rstrip('/')}/postgres")
    try:
        await connection.execute(f'{"CREATE" if create else "DROP"} DATABASE "{name}"' + ("" if create else " WITH (FORCE)"))
    finally:
        await connection.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--flows", type=int, default=30, help="flow runs (one lock each) per backend per round")
    args = parser.parse_args()

    from infra import services
    from leanops.settings import get_settings

    settings = get_settings()
    postgres = settings.postgres_url.get_secret_value()
    database = f"leanops_bench_lock_{uuid.uuid4().hex[:8]}"
    work = Path(tempfile.mkdtemp(prefix="leanops-bench-lock-"))
    asyncio.run(_database(postgres, database, create=True))
    backends = {
        "SQLite": (work / "sqlite", None),
        "PostgreSQL": (work / "postgres", f"postgresql+asyncpg://{postgres.split('://', 1)[1].rstrip('/')}/{database}"),
    }
    servers = {}
    print(f"uptime before: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}", flush=True)
    try:
        for name, (home, url) in backends.items():
            port = _free_port()
            service = services.prefect_server(home, "127.0.0.1", port, url)
            services.start(service, home)
            servers[name] = (service, home, f"http://127.0.0.1:{port}/api")
        results: dict[str, list[tuple[float, list[int]]]] = {name: [] for name in servers}
        for number in range(args.rounds):
            order = list(servers) if number % 2 == 0 else list(reversed(servers))
            for name in order:
                _service, home, api = servers[name]
                rows = measure(api, home, args.flows)
                results[name].extend(rows)
                print(f"round {number + 1} {name:<10} p50 {statistics.median(t for t, _ in rows) * 1000:6.0f} ms  "
                      f"max {max(t for t, _ in rows) * 1000:6.0f} ms  503s {sum(codes.count(503) for _, codes in rows)}", flush=True)
    finally:
        for service, home, _api in servers.values():
            services.stop(service, home)
        asyncio.run(_database(postgres, database, create=False))

    print(f"\nlock acquisition right after a flow run, {args.rounds} rounds x {args.flows} flows per backend; milliseconds")
    print(f"{'backend':<12}{'n':>5}{'p50':>8}{'p95':>8}{'max':>8}{'  acquisitions that met a 503':>30}")
    for name, rows in results.items():
        seconds = [t * 1000 for t, _ in rows]
        met = sum(1 for _, codes in rows if 503 in codes)
        print(f"{name:<12}{len(rows):>5}{statistics.median(seconds):8.0f}{_pct(seconds, 0.95):8.0f}{max(seconds):8.0f}"
              f"{f'{met} ({met / len(rows):.0%})':>30}")
    print(f"uptime after: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    return 0


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


if __name__ == "__main__":
    sys.exit(main())
