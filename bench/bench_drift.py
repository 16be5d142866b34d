"""Drift check cost: the drift-monitor flow's whole check against Evidently's DataDriftPreset.

    .venv/bin/python bench/bench_drift.py              # 1,000,000 x 50 current vs 100,000 reference, 3 repeats
    .venv/bin/python bench/bench_drift.py --quick      # 100,000 x 50 vs 20,000, 1 repeat: a smoke check

Synthetic but realistic data (numpy, seeded): 40 numeric columns (normal, log-normal, exponential,
bimodal, counts) and 10 categorical ones (3 to 200 categories); about a third of the columns shift,
by amounts spread from negligible to large, a few close to the 0.1 threshold. A small XGBoost champion
(leanops.modeling, 30 trees) is fitted on a slice of the reference with a label made from a few columns,
so the check scores its predictions as the flow does.

Measured, each in its own child process (which builds the same data and champion from the seed; peak
memory is the child's VmHWM, the data and the champion included):
- data only: the frames and the champion;
- leanops check: what drift-monitor's tasks call, in their order. The verdict is
  ``monitoring.check_batch`` (statistics and prediction scores on the spec's sample) and
  ``drift_log.open_drift_check`` (the check's MLflow run, which the verdict's events link to); the whole
  check adds ``monitoring.attach_report`` (Evidently's report on ``drift_report_sample_rows`` a side,
  uploaded to MLflow). MLflow is a private server this script starts (``--mlflow-uri`` to use another);
- Evidently DataDriftPreset on the check's own sample (what drift-monitor built its report on before it
  was bounded) and on the full data, each with its HTML.
Measurements alternate their order from one repeat to the next; the table shows medians (and the spread)
against the targets of issue 13, with ``uptime`` before and after: measure on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

N_NUMERIC, N_CATEGORICAL = 40, 10
SEED = 20130701
TARGETS = {"verdict_s": 5.0, "whole_s": 20.0, "peak_mb": 2048.0}
KINDS = ("data", "check", "evidently-sample", "evidently-full")


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
            "target": {"name": "y", "source": "y", "positive": 1},
            "features": features,
            "metric": {"primary": "roc_auc"},
            "model": {"params": {"n_estimators": 30, "max_depth": 4}},
        },
        "bench",
    )


def _label(frame: pd.DataFrame) -> np.ndarray:
    # A label the champion can learn from a few columns, so its scores move with them.
    return ((frame["num_00"] - 100) / 15 + (frame["cat_0"] == "cat_0_v000") + np.log(frame["num_01"]) - 3 > 0.5).astype(int).to_numpy()


def bench_champion(reference: pd.DataFrame, spec):
    """A ChampionData as drift-monitor loads it: model, training reference and holdout (the rest of the reference)."""
    from leanops import modeling, monitoring
    from leanops.registry import ModelVersionInfo

    split = len(reference) * 4 // 5
    training, holdout = reference.iloc[:split], reference.iloc[split:]
    model = modeling.build_model(spec).fit(training[spec.feature_names], _label(training))
    info = ModelVersionInfo(name=spec.name, version="1", run_id="bench", model_uri="-", source="-", metrics={"roc_auc": 0.9})
    return monitoring.ChampionData(info=info, spec=spec, model=model, reference=training, holdout=holdout, importance=None)


def vm_hwm_mb() -> float:
    """This process's peak resident memory (VmHWM): ru_maxrss would carry the parent's peak across fork+exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def _evidently(reference: pd.DataFrame, current: pd.DataFrame, spec) -> tuple[dict, dict, int]:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    from leanops.drift import evidently_column_scores

    definition = DataDefinition(numerical_columns=spec.numeric_features, categorical_columns=spec.categorical_features)
    snapshot = Report([DataDriftPreset()]).run(
        Dataset.from_pandas(current, data_definition=definition),
        Dataset.from_pandas(reference, data_definition=definition),
    )
    found = evidently_column_scores(snapshot.dict())
    html = snapshot.get_html_str(as_iframe=False)
    return ({name: v["score"] >= v["threshold"] for name, v in found.items()}, {name: v["score"] for name, v in found.items()}, len(html))


def worker(kind: str, n_current: int, n_reference: int) -> dict:
    reference, current, _ = make_data(n_current, n_reference)
    spec = bench_spec()
    champion = bench_champion(reference, spec) if kind == "check" else None
    report: dict = {"kind": kind}
    started = time.perf_counter()  # the batch is loaded: what a user waits for starts here
    if kind == "check":
        from leanops import drift_log, monitoring
        from leanops.settings import get_settings

        batch_uri = f"s3://bench/incoming/bench-drift/{n_current}-rows-{os.getpid()}.parquet"
        result = monitoring.check_batch(current, champion)
        check_run = drift_log.open_drift_check(spec.name, "1", batch_uri, result)
        result = result.with_report(check_run.report_url, check_run.report_json_uri)
        report["verdict_s"] = time.perf_counter() - started
        rows = get_settings().drift_report_sample_rows
        monitoring.attach_report(current, batch_uri, champion, result, rows)
        report.update(
            verdicts={f.name: f.drifted for f in result.features}, scores={f.name: f.score for f in result.features},
            report_rows=rows, sample_rows=spec.drift.sample_cap,
        )
    elif kind.startswith("evidently"):
        if kind == "evidently-sample":  # the check's own seeded sample (drift.sample_cap a side)
            reference = reference.sample(n=min(len(reference), spec.drift.sample_cap), random_state=0)
            current = current.sample(n=min(len(current), spec.drift.sample_cap), random_state=1)
        verdicts, scores, html_bytes = _evidently(reference, current, spec)
        report.update(verdicts=verdicts, scores=scores, html_mb=html_bytes / 1e6)
    elif kind != "data":
        raise SystemExit(f"unknown worker {kind!r}")
    report["whole_s"] = time.perf_counter() - started
    report["peak_mb"] = vm_hwm_mb()
    return report


def run_worker(kind: str, n_current: int, n_reference: int, env: dict[str, str]) -> dict:
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, __file__, "--worker", kind, "--rows", str(n_current), "--reference-rows", str(n_reference)],
        capture_output=True, text=True, cwd=ROOT, env=env,
    )
    if completed.returncode != 0:
        raise SystemExit(f"{kind} worker failed:\n{completed.stderr[-3000:]}")
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    report["process_s"] = time.perf_counter() - started
    return report


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def private_mlflow(home: Path):
    """An MLflow server of this run's own (SQLite, local artifacts), as the local stack runs it."""
    from infra import services

    service = services.mlflow_server(home, "127.0.0.1", _free_port())
    services.start(service, home)
    return service


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def _median(runs: list[dict], field: str) -> float:
    return statistics.median(r[field] for r in runs)


def _spread(runs: list[dict], field: str) -> str:
    values = [r[field] for r in runs]
    return f"{min(values):.1f}-{max(values):.1f}" if len(values) > 1 else "-"


def print_table(runs: dict[str, list[dict]], n_current: int, n_reference: int, repeats: int) -> None:
    check, full = runs["check"], runs["evidently-full"]
    columns = sorted(full[0]["verdicts"])
    agree = lambda r: 100 * sum(r["verdicts"][c] == full[0]["verdicts"][c] for c in columns) / len(columns)  # noqa: E731
    first = check[0]
    print(
        f"\ndrift check: current {n_current:,} x {N_NUMERIC + N_CATEGORICAL} ({N_NUMERIC} numeric + {N_CATEGORICAL} categorical) "
        f"vs reference {n_reference:,}; verdict on a {first['sample_rows']:,}-row sample a side, report on "
        f"{first['report_rows']:,}; medians of {repeats} (spread min-max)"
    )
    header = f"{'run':<36}{'verdict s':>10}{'whole s':>9}{'spread':>14}{'peak MB':>9}{'html MB':>9}{'drifted':>9}{'agree %':>9}"
    print(header)
    print("-" * len(header))
    labels = {
        "data": "data only (frames + champion)",
        "check": "leanops check (verdict, report, MLflow)",
        "evidently-sample": "Evidently preset, check's sample",
        "evidently-full": "Evidently preset, full data",
    }
    for kind in KINDS:
        rs = runs[kind]
        verdict = f"{_median(rs, 'verdict_s'):.2f}" if "verdict_s" in rs[0] else ""
        html = f"{statistics.median(r['html_mb'] for r in rs):.1f}" if "html_mb" in rs[0] else ""
        drifted = str(sum(rs[0]["verdicts"].values())) if "verdicts" in rs[0] else ""
        agreement = f"{agree(rs[0]):.0f}" if "verdicts" in rs[0] else ""
        print(f"{labels[kind]:<36}{verdict:>10}{_median(rs, 'whole_s'):>9.2f}{_spread(rs, 'whole_s'):>14}"
              f"{_median(rs, 'peak_mb'):>9.0f}{html:>9}{drifted:>9}{agreement:>9}")
    verdict, whole, peak = _median(check, "verdict_s"), _median(check, "whole_s"), _median(check, "peak_mb")
    print(f"{'target (issue 13)':<36}{TARGETS['verdict_s']:>10.2f}{TARGETS['whole_s']:>9.2f}{'':>14}{TARGETS['peak_mb']:>9.0f}")
    met = verdict <= TARGETS["verdict_s"] and whole <= TARGETS["whole_s"] and peak <= TARGETS["peak_mb"]
    print(f"leanops check {'meets' if met else 'MISSES'} the targets: verdict {verdict:.2f} s, whole check {whole:.2f} s, "
          f"peak {peak:.0f} MB; Evidently's preset takes x{_median(full, 'whole_s') / whole:.1f} its time on the full data, "
          f"x{_median(runs['evidently-sample'], 'whole_s') / whole:.1f} on the check's sample")
    max_diff = max(abs(first["scores"][c] - full[0]["scores"][c]) for c in columns)
    print(f"(agree % = per-column verdicts equal to Evidently's on the full data; largest score difference of the check {max_diff:.4f})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100,000 x 50 vs 20,000 rows, 1 repeat")
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--reference-rows", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None, help="default 3 (1 with --quick)")
    parser.add_argument("--mlflow-uri", default=None, help="an MLflow server to log to (default: a private one)")
    parser.add_argument("--worker", choices=KINDS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    n_current = args.rows or (100_000 if args.quick else 1_000_000)
    n_reference = args.reference_rows or (20_000 if args.quick else 100_000)
    if args.worker:
        print(json.dumps(worker(args.worker, n_current, n_reference)))
        return 0
    repeats = args.repeats or (1 if args.quick else 3)

    from infra import services

    before = uptime()
    with tempfile.TemporaryDirectory(prefix="bench-drift-") as home:
        service = None if args.mlflow_uri else private_mlflow(Path(home))
        mlflow_uri = args.mlflow_uri or service.health_url.rsplit("/", 1)[0]
        env = {**os.environ, "LEANOPS_MLFLOW_TRACKING_URI": mlflow_uri}
        runs: dict[str, list[dict]] = {kind: [] for kind in KINDS}
        try:
            for repeat in range(repeats):
                order = KINDS if repeat % 2 == 0 else tuple(reversed(KINDS))
                for kind in order:
                    runs[kind].append(run_worker(kind, n_current, n_reference, env))
                    print(f"  repeat {repeat + 1}/{repeats}  {kind:<17} {runs[kind][-1]['whole_s']:7.2f} s  "
                          f"peak {runs[kind][-1]['peak_mb']:6.0f} MB", flush=True)
        finally:
            if service is not None:
                services.stop(service, Path(home))
    after = uptime()
    print_table(runs, n_current, n_reference, repeats)
    print(f"uptime before: {before}\nuptime after:  {after}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
