"""Benchmark: one single-row /predict's server-side CPU, pyfunc path against the fast path, in one run.

The flights model (the spec's own parameters, trained here on January-June) is saved by MLflow exactly as
``tracking.log_sklearn_model`` logs it and loaded back as pyfunc. Each round scores N distinct July-August
rows one request at a time, through what the endpoint runs per request outside HTTP: ``parse_rows`` (the
contract check) + ``ServedModel.predict_rows`` + ``describe_outputs``. "pyfunc" is the previous path
(``ServedModel.pyfunc_rows``), "fast" is ``row_scoring.RowScorer``. Rounds alternate which goes first;
medians per request are printed with ``uptime``. Every fast answer is checked equal to pyfunc's.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
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
    from leanops.serving.models import ServedModel, describe_outputs
    from leanops.serving.requests import RowChecker, parse_rows, request_rows
    from leanops.serving.row_scoring import checked_row_scorer

    print(f"uptime before: {uptime()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        spec, pyfunc, example = saved_flights_pyfunc(Path(tmp))
    plain = ServedModel(spec.name, "champion", "1", spec, pyfunc)
    scorer, why = checked_row_scorer(pyfunc, plain.pyfunc_rows, example.head(2).to_dict(orient="records"))
    print(f"load-time check: {why}", flush=True)
    if scorer is None:
        return 1
    fast = ServedModel(spec.name, "champion", "1", spec, pyfunc, scorer=scorer)
    rows = request_rows(datasets.flights_sample([7, 8], rows_per_month=args.requests, seed=9), spec)[: args.requests]
    bodies = [orjson.dumps(row) for row in rows]
    checker = RowChecker.for_spec(spec)

    paths = {"pyfunc": plain.pyfunc_rows, "fast": fast.predict_rows}
    outputs = {}

    def one_round(label: str) -> tuple[float, float]:
        predict = paths[label]
        answers, predict_seconds = [], 0.0
        started = time.perf_counter()
        for body in bodies:
            parsed, _ = parse_rows(body, checker, 100)
            t = time.perf_counter()
            output = predict(parsed)
            predict_seconds += time.perf_counter() - t
            describe_outputs(output, spec)
            answers.append(output)
        outputs[label] = np.concatenate(answers)
        return (time.perf_counter() - started) / len(bodies), predict_seconds / len(bodies)

    for label in paths:  # warm-up: lazy imports, caches
        paths[label](rows[:5])
    timings: dict[str, list[tuple[float, float]]] = {label: [] for label in paths}
    for round_ in range(args.repeats):
        for label in (list(paths) if round_ % 2 == 0 else list(reversed(paths))):
            timings[label].append(one_round(label))
    equal = np.array_equal(outputs["pyfunc"], outputs["fast"])
    batch_equal = np.array_equal(plain.pyfunc_rows(rows), fast.predict_rows(rows))

    print(f"\n{len(bodies):,} single-row requests per round, {args.repeats} rounds alternating order; medians, ms per request")
    print(f"{'path':<8}| {'whole':>7} | {'predict':>7} | rounds (whole)")
    for label, runs in timings.items():
        whole = statistics.median(w for w, _ in runs) * 1000
        predict = statistics.median(p for _, p in runs) * 1000
        print(f"{label:<8}| {whole:7.3f} | {predict:7.3f} | {', '.join(f'{w * 1000:.2f}' for w, _ in runs)}")
    ratio = statistics.median(w for w, _ in timings["pyfunc"]) / statistics.median(w for w, _ in timings["fast"])
    print(f"\nfast / pyfunc: {ratio:.1f}x faster per request; answers equal pyfunc: one by one {equal}, as one batch {batch_equal}")
    print(f"uptime after: {uptime()}")
    return 0 if equal and batch_equal else 1


if __name__ == "__main__":
    sys.exit(main())
