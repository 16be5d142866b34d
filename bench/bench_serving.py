"""Benchmark: the leanops endpoint against `mlflow models serve`, side by side in one run.

Fair by construction:
- the same registered model version (``flights-delay@champion`` if the MLflow it reaches has one, else a
  version of the flights spec trained here on January-June);
- the same number of uvicorn worker processes, both servers pinned to the same cores with ``taskset``,
  the load generator pinned to the other core(s);
- distinct rows (July-August flights, never the same body twice in a row: no response caching), input
  validation on in both (ours: the spec's contract; MLflow: the model signature's schema enforcement).

Load (bench/loadgen.py, wrk2-like, on 127.0.0.1): a fixed rate (default 200 req/s for 30 s, latency counted
from each request's due time), then saturation (C connections back to back). Single-row requests.
Targets (issue 12): p99 <= 20 ms at 200 req/s, and >= 3x MLflow's throughput at saturation.

Run it with the machine otherwise idle: figures taken under other load are printed with the load average
and are not results.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.loadgen import LoadResult, fixed_rate, saturate  # noqa: E402

BIN = Path(sys.executable).parent
MODEL = "flights-delay"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()  # noqa: S607


def reachable(url: str) -> bool:
    try:
        return httpx.get(url, timeout=3).status_code < 500
    except httpx.TransportError:
        return False


def ensure_mlflow(home: Path) -> tuple[str, object | None]:
    """The configured MLflow server if it answers, else a private one in ``home`` (stopped at the end)."""
    from infra import services
    from leanops.settings import get_settings, reset_settings_cache

    uri = get_settings().resolved_mlflow_tracking_uri
    if reachable(f"{uri}/health"):
        return uri, None
    port = free_port()
    service = services.mlflow_server(home, "127.0.0.1", port)
    print(f"no MLflow at {uri}: starting a private one on port {port} ...", flush=True)
    services.start(service, home)
    uri = f"http://127.0.0.1:{port}"
    os.environ["LEANOPS_MLFLOW_TRACKING_URI"] = os.environ["MLFLOW_TRACKING_URI"] = uri
    reset_settings_cache()
    return uri, service


def model_version(spec_path: Path):
    """(spec, version): the flights champion, or one version trained here under a bench model name."""
    import yaml

    from leanops import datasets, features, lineage, modeling, registration, registry
    from leanops.results import Batch
    from leanops.spec import load_spec

    spec = load_spec(ROOT / "specs" / f"{MODEL}.yaml")
    champion = registry.get_alias(MODEL, registry.CHAMPION)
    if champion is None:
        name = "bench-serving"
        data = yaml.safe_load((ROOT / "specs" / f"{MODEL}.yaml").read_text())
        data["name"] = name
        spec_path.write_text(yaml.safe_dump(data))
        spec = load_spec(spec_path)
        champion = registry.get_alias(name, registry.CHAMPION)
        if champion is None:
            print("training a flights model (the spec's own parameters) on January-June ...", flush=True)
            frame = datasets.flights_sample(range(1, 7), rows_per_month=4000, seed=1)
            feature_set = features.build_feature_set(Batch("bench://h1", "bench-h1", frame), spec)
            fitted = modeling.fit_models(feature_set, spec)
            evaluation = modeling.evaluate(fitted, feature_set, spec)
            run_lineage = lineage.build_lineage("bench://h1", "bench-h1", spec.spec_hash, None)
            version = registration.register_training(spec, fitted, evaluation, feature_set, run_lineage, "bench-serving-h1").version
            registry.set_alias(name, registry.CHAMPION, version)
            champion = registry.get_alias(name, registry.CHAMPION)
    else:
        spec_path.write_text((ROOT / "specs" / f"{MODEL}.yaml").read_text())
    return spec, champion.version


def start(argv: list[str], env: dict, log: Path, ready_url: str, timeout: float = 300.0) -> subprocess.Popen:
    with log.open("ab") as out:
        process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT)  # noqa: S603
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{argv[3:6]} exited while starting:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(ready_url, timeout=3).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{ready_url} not ready within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def stop(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


def ms(seconds: float) -> str:
    return f"{seconds * 1000:7.1f}"


def line(server: str, paced: LoadResult, flat_out: LoadResult) -> str:
    return (
        f"{server:<22}| {paced.throughput:7.1f} | {ms(paced.p50)} | {ms(paced.p99)} | {paced.failed:6d} "
        f"| {flat_out.throughput:8.1f} | {ms(flat_out.p50)} | {ms(flat_out.p99)} | {flat_out.failed:6d}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--saturate-seconds", type=float, default=20.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes of each server")
    parser.add_argument("--server-cores", default="1", help="taskset cores of both servers")
    parser.add_argument("--client-cores", default="0", help="cores of the load generator")
    parser.add_argument("--repeats", type=int, default=1, help="rounds, alternating which server goes first")
    args = parser.parse_args(argv)

    from leanops import datasets
    from leanops.serving.requests import request_rows

    print(f"uptime before: {uptime()}", flush=True)
    home = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    mlflow_uri, private_mlflow = ensure_mlflow(home)
    specs = home / "specs"
    specs.mkdir()
    spec, version = model_version(specs / f"{MODEL}.yaml")
    name = spec.name
    rows = request_rows(datasets.flights_sample([7, 8], rows_per_month=2500, seed=9), spec)
    ours_bodies = [orjson.dumps(row) for row in rows]
    mlflow_bodies = [orjson.dumps({"dataframe_records": [row]}) for row in rows]
    print(f"model {name} v{version} from {mlflow_uri}; {len(rows):,} distinct rows; "
          f"{args.workers} worker(s) per server on core(s) {args.server_cores}, load generator on {args.client_cores}", flush=True)

    env = {
        **os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "MLFLOW_TRACKING_URI": mlflow_uri,
        "LEANOPS_MLFLOW_TRACKING_URI": mlflow_uri, "LEANOPS_SPECS_DIR": str(specs), "LEANOPS_SERVING_FOLLOW_EVENTS": "false",
        "LEANOPS_HOME": str(home),
    }
    pin = ["taskset", "-c", args.server_cores]
    ours_port, mlflow_port = free_port(), free_port()
    servers = {}
    try:
        servers["leanops"] = start(
            [*pin, str(BIN / "python"), "-m", "serving", "--port", str(ours_port), "--workers", str(args.workers)],
            env, home / "leanops.log", f"http://127.0.0.1:{ours_port}/ready",
        )
        servers["mlflow models serve"] = start(
            [*pin, str(BIN / "mlflow"), "models", "serve", "-m", f"models:/{name}/{version}", "--env-manager", "local",
             "-h", "127.0.0.1", "-p", str(mlflow_port), "-w", str(args.workers)],
            env, home / "mlflow-serve.log", f"http://127.0.0.1:{mlflow_port}/ping",
        )
        os.sched_setaffinity(0, {int(c) for c in args.client_cores.split(",")})
        targets = {
            "leanops": (ours_port, f"/models/{name}/predict", ours_bodies),
            "mlflow models serve": (mlflow_port, "/invocations", mlflow_bodies),
        }
        for label, (port, path, bodies) in targets.items():  # warm-up: first requests pay lazy imports
            warm = fixed_rate("127.0.0.1", port, path, bodies[-300:], 100, 3, label)
            if not warm.ok:  # slow answers (over the drain time) are the load's business, no answer at all is a broken server
                raise SystemExit(f"{label} answered none of {warm.sent} warm-up requests: see {home}")
            if warm.failed:
                print(f"  warm-up: {label} left {warm.failed} of {warm.sent} requests unanswered in time", flush=True)
        results: dict[str, list[tuple[LoadResult, LoadResult]]] = {label: [] for label in targets}
        for round_ in range(args.repeats):
            order = list(targets) if round_ % 2 == 0 else list(reversed(targets))
            for label in order:
                port, path, bodies = targets[label]
                offset = (round_ * 977) % len(bodies)
                bodies = bodies[offset:] + bodies[:offset]
                paced = fixed_rate("127.0.0.1", port, path, bodies, args.rate, args.seconds, label)
                flat_out = saturate("127.0.0.1", port, path, bodies, args.connections, args.saturate_seconds, label)
                results[label].append((paced, flat_out))
                print(f"  round {round_ + 1}: {line(label, paced, flat_out)}", flush=True)
    finally:
        for process in servers.values():
            stop(process)
        if private_mlflow is not None:
            from infra import services

            services.stop(private_mlflow, home)

    def median(values):
        values = sorted(values)
        return values[len(values) // 2]

    summary = {}
    for label, runs in results.items():
        summary[label] = {
            "rate": median([p.throughput for p, _ in runs]), "p50": median([p.p50 for p, _ in runs]),
            "p99": median([p.p99 for p, _ in runs]), "failed": sum(p.failed + s.failed for p, s in runs),
            "sat": median([s.throughput for _, s in runs]), "sat_p50": median([s.p50 for _, s in runs]),
            "sat_p99": median([s.p99 for _, s in runs]),
        }
    print(f"\nsingle-row requests; {args.rate:g} req/s for {args.seconds:g} s, then {args.connections} connections for "
          f"{args.saturate_seconds:g} s; medians of {args.repeats} round(s)")
    print(f"{'server':<22}| {'req/s':>7} | {'p50 ms':>7} | {'p99 ms':>7} | failed | {'sat req/s':>8} | {'p50 ms':>7} | {'p99 ms':>7}")
    for label, s in summary.items():
        print(f"{label:<22}| {s['rate']:7.1f} | {ms(s['p50'])} | {ms(s['p99'])} | {s['failed']:6d} | {s['sat']:8.1f} | {ms(s['sat_p50'])} | {ms(s['sat_p99'])}")
    ours, theirs = summary["leanops"], summary["mlflow models serve"]
    ratio = ours["sat"] / theirs["sat"] if theirs["sat"] else float("inf")
    print(f"\nleanops p99 at {args.rate:g} req/s: {ours['p99'] * 1000:.1f} ms (target <= 20 ms: {'met' if ours['p99'] <= 0.020 else 'NOT met'})")
    print(f"saturation throughput, leanops / MLflow: {ratio:.2f}x (target >= 3x: {'met' if ratio >= 3 else 'NOT met'})")
    print(f"uptime after: {uptime()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
