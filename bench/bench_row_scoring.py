"""Benchmark: one single-row /predict's server-side CPU, pyfunc path against the fast path, in one run.

The flights model (the spec's own parameters, trained here on January-June) is saved by MLflow exactly as
``tracking.log_sklearn_model`` logs it and loaded back as pyfunc. Each round sends N distinct July-August
rows one request at a time through ``PredictionService.predict``, what the endpoint runs per request apart
from HTTP (contract check, micro-batcher and scoring thread, ids, metrics). "pyfunc" is the previous path
(``ServedModel.pyfunc_rows``), "fast" is ``row_scoring.RowScorer``. Rounds alternate which goes first;
medians per request are printed with ``uptime``. Every fast answer is checked equal to pyfunc's.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()  # noqa: S607


def saved_flights_pyfunc(folder: Path):
    from leanops import datasets, features, modeling, registration, tracking
    from leanops.results import Batch
    from leanops.spec import load_spec

    spec = load_spec(ROOT / "specs" / "flights-delay.yaml")
    frame = datasets.flights_sample(range(1, 7), rows_per_month=4000, seed=1)
    feature_set = features.build_feature_set(Batch("bench://h1", "bench-h1", frame), spec)
    model = modeling.build_model(spec).fit(feature_set.X_train, feature_set.y_train)
    example = registration._example_frame(feature_set.X_train[features.model_input_columns(spec)], spec)
    pyfunc = tracking.save_sklearn_model(folder / "model", model, example, model.predict_proba(example), "predict_proba")
    return spec, pyfunc, example


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=4)
    args = parser.parse_args(argv)
    # pandas' FutureWarnings from the pipeline's steps, once per pyfunc call otherwise.
    warnings.filterwarnings("ignore", category=FutureWarning)

    from leanops import datasets
    from leanops.serving.batching import MicroBatcher
    from leanops.serving.metrics import ServingMetrics
    from leanops.serving.models import ServedModel
    from leanops.serving.requests import request_rows
    from leanops.serving.row_scoring import checked_row_scorer
    from leanops.serving.service import PredictionService
    from leanops.settings import Settings

    print(f"uptime before: {uptime()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        spec, pyfunc, example = saved_flights_pyfunc(Path(tmp))
    plain = ServedModel(spec.name, "champion", "1", spec, pyfunc)
    scorer, why = checked_row_scorer(pyfunc, plain.pyfunc_rows, example.head(2).to_dict(orient="records"))
    print(f"load-time check: {why}", flush=True)
    if scorer is None:
        return 1
    rows = request_rows(datasets.flights_sample([7, 8], rows_per_month=args.requests, seed=9), spec)[: args.requests]
    bodies = [orjson.dumps(row) for row in rows]
    # The endpoint's request handling without HTTP: contract check, micro-batcher and its scoring thread,
    # answer with ids, metrics. The follower is not started: the version is put in the cache here.
    service = PredictionService({spec.name: spec}, Settings(), metrics=ServingMetrics())
    executor = ThreadPoolExecutor(max_workers=1)

    def served(path_scorer) -> ServedModel:
        inner = ServedModel(spec.name, "champion", "1", spec, pyfunc, scorer=path_scorer)
        return ServedModel(spec.name, "champion", "1", spec, pyfunc, scorer=path_scorer, batcher=MicroBatcher(inner.predict_rows, executor))

    paths = {"pyfunc": served(None), "fast": served(scorer)}
    outputs: dict[str, list] = {}

    async def requests(label: str) -> tuple[float, float]:
        service.cache.swap(paths[label])
        answers = []
        wall, cpu = time.perf_counter(), time.process_time()
        for body in bodies:
            answer = await service.predict(spec.name, body)
            if answer.status != 200:
                raise SystemExit(f"{label}: {answer.status} {answer.body}")
            answers.append(answer.body["predictions"][0]["output"])
        outputs[label] = answers
        return (time.perf_counter() - wall) / len(bodies), (time.process_time() - cpu) / len(bodies)

    for label in paths:  # warm-up: lazy imports, caches
        paths[label].predict_rows(rows[:5])
    timings: dict[str, list[tuple[float, float]]] = {label: [] for label in paths}
    for round_ in range(args.repeats):
        for label in (list(paths) if round_ % 2 == 0 else list(reversed(paths))):
            timings[label].append(asyncio.run(requests(label)))
    executor.shutdown()
    equal = np.array_equal(np.asarray(outputs["pyfunc"]), np.asarray(outputs["fast"]))
    batch_equal = np.array_equal(paths["pyfunc"].predict_rows(rows), paths["fast"].predict_rows(rows))

    print(f"\n{len(bodies):,} single-row requests per round through PredictionService.predict, {args.repeats} rounds "
          "alternating order; medians, ms per request (CPU: this process, every thread)")
    print(f"{'path':<8}| {'wall':>7} | {'CPU':>7} | rounds (wall)")
    for label, runs in timings.items():
        wall = statistics.median(w for w, _ in runs) * 1000
        cpu = statistics.median(c for _, c in runs) * 1000
        print(f"{label:<8}| {wall:7.3f} | {cpu:7.3f} | {', '.join(f'{w * 1000:.2f}' for w, _ in runs)}")
    ratio = statistics.median(c for _, c in timings["pyfunc"]) / statistics.median(c for _, c in timings["fast"])
    print(f"\nCPU per request, pyfunc / fast: {ratio:.1f}x; answers equal pyfunc: one by one {equal}, as one batch {batch_equal}")
    print(f"uptime after: {uptime()}")
    return 0 if equal and batch_equal else 1


if __name__ == "__main__":
    sys.exit(main())
