"""Benchmark: batch scoring throughput (rows/s) of leanops' ``score`` against a plain ``pyfunc.predict`` loop,
on the same saved model and the same data, and the peak memory of scoring as the file grows.

No stack needed: the flights model (the spec's own parameters, trained on 60,000 flights of January-June)
is saved with MLflow locally, as registration logs it. July-December (~170,000 flights, a parquet of
50,000-row row groups) is scored

  (a) by ``leanops.scoring.score_file``: chunk by chunk, each chunk checked against the spec's contract,
      predictions (with model version and input fingerprint) appended to a parquet file;
  (b) by a plain loop: the same chunks read with pyarrow, conformed to the model's signature (numbers as
      doubles, the time as ISO text, as MLflow's schema enforcement demands), ``pyfunc.predict``; nothing written.

Runs alternate (a, b, b, a, ...), the figure is the median of ``--repeats``; ``uptime`` is printed before
and after. Then each of score (file x1 and x4) and a whole-frame read + predict (x1 and x4) runs in a child
process that reports its max RSS: memory that follows the chunk stays flat as the file grows.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CONSTANTS = {"model_name": "flights-delay", "model_version": "bench", "input_fingerprint": "bench"}


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def save_model(folder: Path, train_rows_per_month: int) -> Path:
    import mlflow.sklearn
    from mlflow.models import infer_signature

    from leanops import datasets, features, modeling, tracking
    from leanops.registration import _example_frame
    from leanops.results import Batch
    from leanops.spec import load_spec

    spec = load_spec(ROOT / "specs" / "flights-delay.yaml")
    frame = datasets.flights_sample(range(1, 7), rows_per_month=train_rows_per_month, seed=1)
    feature_set = features.build_feature_set(Batch("bench://h1", "h1", frame), spec)
    model = modeling.fit_models(feature_set, spec).model
    example = _example_frame(feature_set.X_train[features.model_input_columns(spec)], spec)
    path = folder / "model"
    mlflow.sklearn.save_model(
        model, str(path), signature=infer_signature(example, model.predict_proba(feature_set.X_train.head(5))),
        input_example=example, pip_requirements=tracking._pip_requirements(),
        skops_trusted_types=[*tracking.XGBOOST_TYPES, *features.FEATURE_TRUSTED_TYPES],
        pyfunc_predict_fn="predict_proba", metadata=modeling.pyfunc_output(spec),
    )
    return path


def write_batches(folder: Path, row_group: int) -> tuple[Path, Path]:
    import pandas as pd

    from leanops import datasets

    later = datasets.flights(range(7, 13))
    one = folder / "july-december.parquet"
    later.to_parquet(one, row_group_size=row_group, index=False)
    four = folder / "july-december-x4.parquet"
    pd.concat([later] * 4, ignore_index=True).to_parquet(four, row_group_size=row_group, index=False)
    return one, four


def conform(frame, spec):
    """What a pyfunc caller must do to a raw batch: MLflow's schema enforcement refuses int64 for a double
    column, and the signature takes the time as ISO text (as JSON carries it)."""
    numeric = [c for c in spec.numeric_features if c in frame]
    frame = frame.astype(dict.fromkeys(numeric, "float64"))
    time_column = spec.time.column
    return frame.assign(**{time_column: frame[time_column].map(lambda t: t.isoformat())})


def run_score(model_path: Path, batch: Path, out: Path, chunk_rows: int) -> tuple[float, int]:
    import mlflow.sklearn

    from leanops import scoring
    from leanops.spec import load_spec

    spec = load_spec(ROOT / "specs" / "flights-delay.yaml")
    model = mlflow.sklearn.load_model(str(model_path))
    started = time.perf_counter()
    rows, _, _ = scoring.score_file(model, spec, batch, str(batch), out, chunk_rows=chunk_rows, constants=CONSTANTS)
    return time.perf_counter() - started, rows


def run_pyfunc_loop(model_path: Path, batch: Path, chunk_rows: int, keep: list | None = None) -> tuple[float, int]:
    import mlflow.pyfunc
    import pyarrow.parquet as pq

    from leanops.features import model_input_columns
    from leanops.spec import load_spec

    spec = load_spec(ROOT / "specs" / "flights-delay.yaml")
    model = mlflow.pyfunc.load_model(str(model_path))
    started = time.perf_counter()
    rows = 0
    for chunk in pq.ParquetFile(batch).iter_batches(batch_size=chunk_rows, columns=model_input_columns(spec)):
        predictions = model.predict(conform(chunk.to_pandas(), spec))
        rows += len(predictions)
        if keep is not None:
            keep.append(predictions)
    return time.perf_counter() - started, rows


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM): unlike getrusage's ru_maxrss, which Linux carries over from the
    parent across fork and exec, it counts only this program's own memory."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def probe(kind: str, model_path: Path, batch: Path, chunk_rows: int) -> None:
    """In a child process: score ``batch`` one way and print the process's peak RSS (MB)."""
    import mlflow.sklearn

    before = peak_rss_mb()
    with tempfile.TemporaryDirectory() as tmp:
        if kind == "score":
            seconds, rows = run_score(model_path, batch, Path(tmp) / "out.parquet", chunk_rows)
        else:
            import pandas as pd

            from leanops.features import model_input_columns
            from leanops.spec import load_spec

            spec = load_spec(ROOT / "specs" / "flights-delay.yaml")
            model = mlflow.sklearn.load_model(str(model_path))
            started = time.perf_counter()
            frame = pd.read_parquet(batch)
            rows = len(model.predict_proba(frame[model_input_columns(spec)]))
            seconds = time.perf_counter() - started
    after = peak_rss_mb()
    print("RESULT " + json.dumps({"rows": rows, "seconds": seconds, "max_rss_mb": after, "rss_before_mb": before}), flush=True)


def child(kind: str, model_path: Path, batch: Path, chunk_rows: int) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--probe", kind, "--model", str(model_path), "--batch", str(batch), "--chunk-rows", str(chunk_rows)],
        capture_output=True, text=True, cwd=ROOT, check=True,
    )
    return json.loads(next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))[7:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chunk-rows", type=int, default=50_000)
    parser.add_argument("--train-rows-per-month", type=int, default=10_000)
    parser.add_argument("--probe", choices=["score", "whole"], help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        probe(args.probe, args.model, args.batch, args.chunk_rows)
        return

    import numpy as np
    import pyarrow.parquet as pq

    print(f"uptime before: {uptime()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-scoring-") as tmp:
        folder = Path(tmp)
        model_path = save_model(folder, args.train_rows_per_month)
        one, four = write_batches(folder, args.chunk_rows)
        n_rows = pq.ParquetFile(one).metadata.num_rows

        # Same model, same data, same predictions: otherwise the comparison means nothing.
        kept: list = []
        run_pyfunc_loop(model_path, one, args.chunk_rows, kept)
        run_score(model_path, one, folder / "check.parquet", args.chunk_rows)
        scored = pq.read_table(folder / "check.parquet").column("probability").to_numpy()
        assert np.array_equal(scored, np.concatenate(kept)[:, 1]), "score and pyfunc disagree"

        times: dict[str, list[float]] = {"score": [], "pyfunc loop": []}
        for repeat in range(args.repeats):
            order = ["score", "pyfunc loop"] if repeat % 2 == 0 else ["pyfunc loop", "score"]
            for name in order:
                if name == "score":
                    seconds, rows = run_score(model_path, one, folder / "out.parquet", args.chunk_rows)
                else:
                    seconds, rows = run_pyfunc_loop(model_path, one, args.chunk_rows)
                assert rows == n_rows
                times[name].append(seconds)
                print(f"  run {repeat + 1} {name}: {seconds:.2f} s ({rows / seconds:,.0f} rows/s)", flush=True)

        print(f"\nbatch scoring of {n_rows:,} flights (July-December), chunks of {args.chunk_rows:,} rows, "
              f"median of {args.repeats}:")
        median = {name: statistics.median(values) for name, values in times.items()}
        for name in times:
            print(f"  {name:<12} {median[name]:7.2f} s  {n_rows / median[name]:>10,.0f} rows/s")
        print(f"  score / pyfunc loop throughput: {median['pyfunc loop'] / median['score']:.2f}x")

        print("\npeak memory (peak RSS, VmHWM, of a child process that loads the model and scores the file):")
        for kind in ("score", "whole"):
            for label, batch in (("x1", one), ("x4", four)):
                result = child(kind, model_path, batch, args.chunk_rows)
                print(f"  {kind:<6} {label} ({result['rows']:>9,} rows): {result['max_rss_mb']:7.0f} MB "
                      f"(after imports: {result['rss_before_mb']:.0f} MB), {result['seconds']:.1f} s", flush=True)
    print(f"\nuptime after: {uptime()}")


if __name__ == "__main__":
    main()
