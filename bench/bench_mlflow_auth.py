"""Benchmark: the MLflow server's CPU per authenticated request on the production profile, with MLflow's
basic-auth credential cache (``LEANOPS_MLFLOW_AUTH_CACHE_SECONDS``, default 60) against without it (0).

Why: in the 25-model simulation the MLflow server was the busiest process (105% of a core on average)
while it served a few hundred registry calls a minute. Its basic-auth app checks the password hash of
every request (werkzeug's scrypt) unless ``auth_cache_ttl_seconds`` is set.

Each round starts the production MLflow server as ``infra.stack up --profile production`` starts it
(``infra.production.mlflow``: PostgreSQL backend and user store, basic auth; databases of its own, dropped
at the end), sends the same authenticated registry calls a flow run sends (search registered models,
get a model's alias), and reads the server's CPU time (its process and children) before and after.
The two configurations alternate who goes first; medians over ``--repeats`` rounds each. Needs
PostgreSQL on 127.0.0.1:5432 (trust auth). Run it with the machine otherwise idle.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_serving import free_port, uptime  # noqa: E402
from infra import production, services  # noqa: E402
from leanops.settings import Settings  # noqa: E402


def _cpu_seconds(pid: int) -> float:
    process = psutil.Process(pid)
    total = 0.0
    for each in [process, *process.children(recursive=True)]:
        try:
            times = each.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def one_round(cache_seconds: int, requests: int, run_id: str) -> dict[str, float]:
    home = Path(tempfile.mkdtemp(prefix="leanops-bench-mlflow-auth-"))
    settings = Settings(
        profile="production", home=home, database_prefix=f"leanops_bench_auth_{run_id}",
        mlflow_password=f"mlflow-{secrets.token_hex(8)}", mlflow_port=free_port(),
        mlflow_auth_cache_seconds=cache_seconds, mlflow_tracking_uri=None,
    )
    production.ensure_databases(settings)
    production.mlflow_auth_config(settings)
    service = production.mlflow(settings)
    pid = services.start(service, home)
    try:
        base = f"http://{settings.host}:{settings.mlflow_port}"
        auth = (settings.mlflow_username, settings.mlflow_password.get_secret_value())
        with httpx.Client(base_url=base, auth=auth, timeout=60) as client:
            calls = [
                ("GET", "/api/2.0/mlflow/registered-models/search", {"max_results": 10}),
                ("GET", "/api/2.0/mlflow/registered-models/alias", {"name": "absent-model", "alias": "champion"}),
            ]
            for method, path, params in calls * 5:  # warm: imports, connections, the first hash
                client.request(method, path, params=params)
            cpu_before, started = _cpu_seconds(pid), time.perf_counter()
            for i in range(requests):
                method, path, params = calls[i % len(calls)]
                response = client.request(method, path, params=params)
                if response.status_code not in (200, 404):
                    raise SystemExit(f"{path}: {response.status_code} {response.text[:300]}")
            wall, cpu = time.perf_counter() - started, _cpu_seconds(pid) - cpu_before
        return {"cpu_ms_per_request": cpu / requests * 1000, "requests_per_second": requests / wall}
    finally:
        services.stop(service, home)
        production.drop_databases(settings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    print(f"load before: {uptime()}")
    results: dict[int, list[dict[str, float]]] = {60: [], 0: []}
    for repeat in range(args.repeats):
        order = (60, 0) if repeat % 2 == 0 else (0, 60)
        for cache_seconds in order:
            figures = one_round(cache_seconds, args.requests, f"{secrets.token_hex(3)}")
            results[cache_seconds].append(figures)
            print(f"round {repeat + 1} cache {cache_seconds:>2} s: {figures['cpu_ms_per_request']:.1f} ms CPU/request, "
                  f"{figures['requests_per_second']:.0f} req/s", flush=True)
    print(f"load after:  {uptime()}")

    def median(cache_seconds: int, key: str) -> tuple[float, float, float]:
        values = [r[key] for r in results[cache_seconds]]
        return statistics.median(values), min(values), max(values)

    print(f"\nMLflow server (production profile, basic auth), {args.requests} registry calls a round, "
          f"{args.repeats} rounds alternating: median (min-max)")
    print(f"{'credential cache':<22}{'CPU per request':>28}{'requests/s, one client':>30}")
    for cache_seconds in (60, 0):
        cpu, rate = median(cache_seconds, "cpu_ms_per_request"), median(cache_seconds, "requests_per_second")
        print(f"{f'{cache_seconds} s':<22}{f'{cpu[0]:.1f} ms ({cpu[1]:.1f}-{cpu[2]:.1f})':>28}"
              f"{f'{rate[0]:.0f} ({rate[1]:.0f}-{rate[2]:.0f})':>30}")
    ratio = median(0, "cpu_ms_per_request")[0] / median(60, "cpu_ms_per_request")[0]
    print(f"CPU per request without the cache / with it: {ratio:.1f}x")


if __name__ == "__main__":
    main()
