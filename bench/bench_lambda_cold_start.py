"""Benchmark: the Lambda handler's cold start, as a fresh container pays it: import of the handler and
the app, then the models loaded from MLflow (warm), then the first and a second request (warm container).

Each run is a fresh interpreter (``python -c``), in the order import -> warm -> requests; medians over
``--runs``. The model is the one bench/bench_serving.py serves (the flights champion, or a flights
version trained there). The MLflow server is local here: on AWS the download of the artifacts from your
MLflow server adds its own time, and Lambda's CPU share follows the function's memory (1,769 MB = 1 vCPU).
Run it with the machine otherwise idle: figures taken under other load are printed with the load
average and are not results.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_serving import ensure_mlflow, model_version, uptime  # noqa: E402

COLD = """
import json, sys, time
started = time.perf_counter()
from serving.aws_lambda import handler, warm
imported = time.perf_counter()
warm(600)
warmed = time.perf_counter()
event = json.loads(sys.argv[1])
answers = []
for _ in range(2):
    t = time.perf_counter()
    status = handler(event, None)["statusCode"]
    answers.append((status, time.perf_counter() - t))
print(json.dumps({"import": imported - started, "warm": warmed - imported,
                  "first": answers[0][1], "second": answers[1][1], "statuses": [a[0] for a in answers]}))
"""


def predict_event(model: str, row: dict) -> dict:
    """One HTTP API (payload 2.0) request, as API Gateway sends it."""
    path = f"/models/{model}/predict"
    return {
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "", "isBase64Encoded": False,
        "headers": {"content-type": "application/json", "host": "bench.execute-api.us-east-1.amazonaws.com"},
        "requestContext": {"http": {"method": "POST", "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1"},
                           "stage": "$default", "requestId": "bench", "domainName": "bench.execute-api.us-east-1.amazonaws.com"},
        "body": json.dumps(row),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tracking-uri", help="an MLflow store to use as it is (e.g. sqlite:///path/mlflow.db); default: a server")
    args = parser.parse_args(argv)
    print(f"before: {uptime()}", flush=True)
    home = Path(tempfile.mkdtemp(prefix="bench-lambda-"))
    specs = home / "specs"
    specs.mkdir()
    service = None
    if args.tracking_uri:
        os.environ["LEANOPS_MLFLOW_TRACKING_URI"] = os.environ["MLFLOW_TRACKING_URI"] = args.tracking_uri
    else:
        _, service = ensure_mlflow(home)
    try:
        from leanops import datasets
        from leanops.serving.requests import request_rows

        spec, version = model_version(specs / "model.yaml")
        row = request_rows(datasets.flights_sample([7], rows_per_month=10, seed=3), spec)[0]
        env = {**os.environ, "LEANOPS_SPECS_DIR": str(specs), "LEANOPS_SERVING_FOLLOW_EVENTS": "false", "LEANOPS_HOME": str(home)}
        runs = []
        for i in range(args.runs):
            done = subprocess.run([sys.executable, "-c", COLD, json.dumps(predict_event(spec.name, row))],  # noqa: S603
                                  capture_output=True, text=True, cwd=ROOT, env=env, check=True)
            run = json.loads(done.stdout.strip().splitlines()[-1])
            assert run["statuses"] == [200, 200], run
            runs.append(run)
            print(f"run {i + 1}: import {run['import']:.2f} s, models {run['warm']:.2f} s, first request "
                  f"{run['first'] * 1000:.1f} ms, second {run['second'] * 1000:.1f} ms", flush=True)
        median = {k: statistics.median(r[k] for r in runs) for k in ("import", "warm", "first", "second")}
        print(f"\n{spec.name} v{version}, {args.runs} cold starts, medians:")
        print(f"  import of the handler and the app   {median['import']:6.2f} s")
        print(f"  models loaded from MLflow (warm)    {median['warm']:6.2f} s")
        print(f"  cold start (import + models)        {median['import'] + median['warm']:6.2f} s")
        print(f"  first request after it             {median['first'] * 1000:6.1f} ms")
        print(f"  a request in a warm container       {median['second'] * 1000:6.1f} ms")
    finally:
        if service is not None:
            from infra import services

            services.stop(service, home)
    print(f"after: {uptime()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
