"""Drift check cost: leanops' sampled fast engine vs Evidently's DataDriftPreset on the full data.

    .venv/bin/python bench/bench_drift.py            # 1,000,000 x 50 current vs 100,000 reference
    .venv/bin/python bench/bench_drift.py --quick    # 100,000 x 50 vs 20,000: a smoke check

Synthetic but realistic data (numpy, seeded): 40 numeric columns (normal, log-normal, exponential,
bimodal, counts) and 10 categorical ones (3 to 200 categories); about a third of the columns shift,
by amounts spread from negligible to large, a few close to the 0.1 threshold.

Each measurement runs in its own subprocess, which builds the same data from the seed and reports
the wall time of the drift check alone and its peak RSS (getrusage: includes the data). A
"data only" run shows what the frames alone cost. Verdict agreement compares our per-column
verdicts with the full-data Evidently run (Evidently's defaults, explicit DataDefinition).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

N_NUMERIC, N_CATEGORICAL = 40, 10
SEED = 20130701


def _numeric_column(rng: np.random.Generator, i: int, n: int, shift: float) -> np.ndarray:
    """Column ``i`` of a family chosen by ``i``; ``shift`` moves it by about that many reference stds."""
    family = i % 5
    if family == 0:
        return rng.normal(100 + 15 * shift, 15, n)
    if family == 1:
        # Log-normal amounts: the shift scales the median (as a price or duration change would).
        return rng.lognormal(3 + 0.8 * shift, 0.8, n)
    if family == 2:
        return rng.exponential(5 * (1 + shift), n)
    if family == 3:
        # Two modes whose mix changes (e.g. day/night traffic).
        mix = np.clip(0.3 + 0.5 * shift, 0, 1)
        return np.where(rng.random(n) < mix, rng.normal(20, 3, n), rng.normal(60, 5, n))
    return rng.poisson(12 * (1 + 0.3 * shift), n).astype("float64")


def _shares(rng: np.random.Generator, k: int) -> np.ndarray:
    p = rng.dirichlet(np.full(k, 0.7))
    return p / p.sum()


def make_data(n_current: int, n_reference: int, seed: int = SEED) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, float]]:
    """(reference, current, planted shift per column): the same for every subprocess."""
    plan = np.random.default_rng(seed)
    # Shifts: 27 columns unchanged, the rest from tiny to large, some near the threshold.
    numeric_shift = np.zeros(N_NUMERIC)
    moved = plan.choice(N_NUMERIC, size=14, replace=False)
    numeric_shift[moved] = [0.02, 0.05, 0.07, 0.09, 0.12, 0.15, 0.2, 0.3, 0.4, 0.6, 0.8, 1.0, 1.5, 2.0]
    cat_moves = [0.0, 0.0, 0.0, 0.0, 0.0, 0.02, 0.1, 0.25, 0.5, 0.9]
    cardinality = [3, 5, 8, 12, 20, 30, 50, 80, 120, 200]

    reference, current, planted = {}, {}, {}
    for i in range(N_NUMERIC):
        name = f"num_{i:02d}"
        ref_rng, cur_rng = np.random.default_rng([seed, i, 0]), np.random.default_rng([seed, i, 1])
        reference[name] = _numeric_column(ref_rng, i, n_reference, 0.0)
        current[name] = _numeric_column(cur_rng, i, n_current, float(numeric_shift[i]))
        planted[name] = float(numeric_shift[i])
    for j in range(N_CATEGORICAL):
        name = f"cat_{j}"
        k = cardinality[j]
        rng = np.random.default_rng([seed, 100 + j])
        labels = np.array([f"{name}_v{v:03d}" for v in range(k)], dtype=object)
        p_ref = _shares(rng, k)
        p_cur = (1 - cat_moves[j]) * p_ref + cat_moves[j] * _shares(rng, k)
        reference[name] = labels[rng.choice(k, size=n_reference, p=p_ref)]
        current[name] = labels[rng.choice(k, size=n_current, p=p_cur / p_cur.sum())]
        planted[name] = cat_moves[j]
    return pd.DataFrame(reference), pd.DataFrame(current), planted


def bench_spec():
    from leanops.spec import parse_spec

    features = [{"name": f"num_{i:02d}", "kind": "numeric"} for i in range(N_NUMERIC)]
    features += [{"name": f"cat_{j}", "kind": "categorical"} for j in range(N_CATEGORICAL)]
    return parse_spec(
        {
            "name": "bench-drift",
            "task": "binary",
            "target": {"name": "y", "source": "y"},
            "features": features,
            "metric": {"primary": "roc_auc"},
        },
        "bench",
    )


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def worker(kind: str, n_current: int, n_reference: int) -> dict:
    reference, current, _ = make_data(n_current, n_reference)
    spec = bench_spec()
    started = time.perf_counter()
    if kind == "data":
        verdicts, scores = {}, {}
    elif kind == "ours":
        from leanops.drift import compute_drift

        result = compute_drift(reference, current, spec)
        verdicts = {f.name: f.drifted for f in result.features}
        scores = {f.name: f.score for f in result.features}
    elif kind == "evidently":
        from evidently import DataDefinition, Dataset, Report
        from evidently.presets import DataDriftPreset

        from leanops.drift import evidently_column_scores

        definition = DataDefinition(numerical_columns=spec.numeric_features, categorical_columns=spec.categorical_features)
        snapshot = Report([DataDriftPreset()]).run(
            Dataset.from_pandas(current, data_definition=definition),
            Dataset.from_pandas(reference, data_definition=definition),
        )
        found = evidently_column_scores(snapshot.dict())
        verdicts = {name: v["score"] >= v["threshold"] for name, v in found.items()}
        scores = {name: v["score"] for name, v in found.items()}
    else:
        raise SystemExit(f"unknown worker {kind!r}")
    return {"kind": kind, "seconds": time.perf_counter() - started, "peak_mb": peak_rss_mb(), "verdicts": verdicts, "scores": scores}


def run_worker(kind: str, n_current: int, n_reference: int) -> dict:
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, __file__, "--worker", kind, "--rows", str(n_current), "--reference-rows", str(n_reference)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    if completed.returncode != 0:
        raise SystemExit(f"{kind} worker failed:\n{completed.stderr[-3000:]}")
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    report["process_seconds"] = time.perf_counter() - started
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100,000 x 50 vs 20,000 rows")
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--reference-rows", type=int, default=None)
    parser.add_argument("--worker", choices=["data", "ours", "evidently"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    n_current = args.rows or (100_000 if args.quick else 1_000_000)
    n_reference = args.reference_rows or (20_000 if args.quick else 100_000)
    if args.worker:
        print(json.dumps(worker(args.worker, n_current, n_reference)))
        return

    runs = {kind: run_worker(kind, n_current, n_reference) for kind in ("data", "ours", "evidently")}
    ours, theirs = runs["ours"], runs["evidently"]
    columns = sorted(theirs["verdicts"])
    same = sum(ours["verdicts"][c] == theirs["verdicts"][c] for c in columns)
    drifted_theirs = {c for c in columns if theirs["verdicts"][c]}
    drifted_ours = {c for c in columns if ours["verdicts"][c]}
    max_diff = max(abs(ours["scores"][c] - theirs["scores"][c]) for c in columns)

    print(
        f"drift check: current {n_current:,} x {N_NUMERIC + N_CATEGORICAL} ({N_NUMERIC} numeric + {N_CATEGORICAL} categorical) "
        f"vs reference {n_reference:,}; ours samples to 100,000 rows a side"
    )
    header = f"{'run':<34}{'check s':>9}{'process s':>11}{'peak MB':>9}{'x time':>8}{'x memory':>10}{'drifted':>9}{'agree %':>9}"
    print(header)
    print("-" * len(header))
    rows = [
        ("data only (build frames)", runs["data"], "", "", "", ""),
        ("leanops fast (sampled)", ours, "1.0", "1.0", str(len(drifted_ours)), f"{100 * same / len(columns):.0f}"),
        (
            "Evidently DataDriftPreset (full)",
            theirs,
            f"{theirs['seconds'] / ours['seconds']:.1f}",
            f"{theirs['peak_mb'] / ours['peak_mb']:.1f}",
            str(len(drifted_theirs)),
            "100",
        ),
    ]
    for label, run, x_time, x_mem, drifted, agree in rows:
        print(f"{label:<34}{run['seconds']:>9.2f}{run['process_seconds']:>11.1f}{run['peak_mb']:>9.0f}{x_time:>8}{x_mem:>10}{drifted:>9}{agree:>9}")
    disagreements = sorted(c for c in columns if ours["verdicts"][c] != theirs["verdicts"][c])
    print(
        f"(x = Evidently / ours; largest score difference {max_diff:.4f}; "
        f"disagreements: {', '.join(disagreements) if disagreements else 'none'})"
    )


if __name__ == "__main__":
    main()
