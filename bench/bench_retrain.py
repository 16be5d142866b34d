"""Benchmark: the retrain flow's orchestration overhead, caching and memory on the full flights data.

Needs the local stack running (`make stack-up`). Prints one table; each figure is measured in
this run, side by side:
  (a) retrain flow vs the same stages as a plain script (no Prefect), timed in-process, call to return;
  (b) a second, fully cached flow run on the same data vs the first;
  (c) peak memory (max RSS) of the process that ran the flow;
  (d) whole-process wall time of `python -m flows.retrain`, imports included.
Each measurement runs in its own child process so memory and imports do not leak between them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _client_env() -> dict[str, str]:
    from leanops.settings import get_settings

    settings = get_settings()
    return {
        "PREFECT_API_URL": settings.resolved_prefect_api_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "true",
        "PREFECT_LOCAL_STORAGE_PATH": settings.resolved_result_storage,
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "MLFLOW_TRACKING_URI": settings.resolved_mlflow_tracking_uri,
        "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "leanops"),
        "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "leanops"),
        "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
    }


def _child(mode: str, spec_path: str, batch_uri: str) -> None:
    """Runs inside a child process; prints one JSON line."""
    timings: dict[str, float] = {}
    if mode == "plain":
        from bench.plain_retrain import plain_retrain

        started = time.perf_counter()
        result = plain_retrain(spec_path, batch_uri)
        timings["seconds"] = time.perf_counter() - started
    else:
        from flows.retrain import retrain

        started = time.perf_counter()
        result = retrain(spec=spec_path, batch_uri=batch_uri)
        timings["seconds"] = time.perf_counter() - started
        started = time.perf_counter()
        cached = retrain(spec=spec_path, batch_uri=batch_uri)
        timings["cached_seconds"] = time.perf_counter() - started
        assert not cached.created, "the second run registered a new version: caching/idempotency is broken"
    assert result.created, "the timed run did not register a new version"
    timings["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(timings), flush=True)


def _spec_variant(folder: Path, name: str) -> str:
    data = yaml.safe_load((ROOT / "specs" / "flights-delay.yaml").read_text())
    data["name"] = name
    data.setdefault("tuning", {})["enabled"] = False
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _run_child(mode: str, spec_path: str, batch_uri: str, env: dict[str, str]) -> dict[str, float]:
    output = subprocess.run(
        [sys.executable, __file__, "--child", mode, spec_path, batch_uri],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False,
    )
    lines = [line for line in output.stdout.splitlines() if line.startswith("RESULT ")]
    if output.returncode != 0 or not lines:
        raise SystemExit(f"{mode} run failed:\n{output.stdout[-3000:]}\n{output.stderr[-5000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", nargs=3, metavar=("MODE", "SPEC", "URI"), help=argparse.SUPPRESS)
    parser.add_argument("--months", default="1-12", help="months of 2013 to train on, e.g. 1-12 (default: all 336,776 flights)")
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return

    from leanops import datasets, storage
    from leanops.settings import get_settings

    settings = get_settings()
    env = {**os.environ, **_client_env()}
    for url in (f"{settings.resolved_prefect_api_url}/health", f"{settings.resolved_mlflow_tracking_uri}/health"):
        try:
            import urllib.request

            urllib.request.urlopen(url, timeout=3)  # noqa: S310
        except Exception as exc:  # noqa: BLE001
            raise SystemExit(f"{url} does not answer ({exc}); start the local stack first: make stack-up") from exc

    first, last = (int(x) for x in args.months.split("-"))
    folder = settings.state_dir("bench")
    folder.mkdir(parents=True, exist_ok=True)
    batch_uri = str(folder / f"flights-{first:02d}-{last:02d}.parquet")
    frame = datasets.flights(range(first, last + 1))
    storage.write_table(frame, batch_uri)
    stamp = time.strftime("%Y%m%d%H%M%S")

    plain = _run_child("plain", _spec_variant(folder, f"bench-plain-{stamp}"), batch_uri, env)
    flow = _run_child("flow", _spec_variant(folder, f"bench-flow-{stamp}"), batch_uri, env)
    started = time.perf_counter()
    module_spec = _spec_variant(folder, f"bench-module-{stamp}")
    completed = subprocess.run(
        [sys.executable, "-m", "flows.retrain", "--spec", module_spec, "--batch-uri", batch_uri],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False,
    )
    process_seconds = time.perf_counter() - started
    if completed.returncode != 0:
        raise SystemExit(f"python -m flows.retrain failed:\n{completed.stderr[-4000:]}")

    overhead = flow["seconds"] - plain["seconds"]
    rows = [
        ("(a) flow / plain script", f"{flow['seconds']:.2f} s", f"{plain['seconds']:.2f} s", flow["seconds"] / plain["seconds"], "<= 1.15"),
        ("(b) cached run / first run", f"{flow['cached_seconds']:.2f} s", f"{flow['seconds']:.2f} s", flow["cached_seconds"] / flow["seconds"], "<= 0.15"),
        ("(c) peak memory of flow run", f"{flow['max_rss_mb']:.0f} MB", "1536 MB", flow["max_rss_mb"] / 1536, "<= 1.0"),
        ("(d) python -m flows.retrain, whole process", f"{process_seconds:.2f} s", f"{flow['seconds']:.2f} s", process_seconds / flow["seconds"], "(start-up visible)"),
    ]
    print(f"\nretrain benchmark on {len(frame):,} flights (months {first}-{last}), tuning off, {os.cpu_count()} cores")
    print(f"{'measure':<44}{'value':>12}{'against':>12}{'ratio':>8}  target")
    for label, value, against, ratio, target in rows:
        print(f"{label:<44}{value:>12}{against:>12}{ratio:>8.3f}  {target}")
    print(f"orchestration overhead (flow - plain): {overhead:+.2f} s; plain script peak memory {plain['max_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
