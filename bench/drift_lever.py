"""Which drift lever stops the seasons from drifting every month without going blind?

    .venv/bin/python bench/drift_lever.py

The demo's months on the flights of 2013: each month from July to December is checked, as the
drift-monitor flow checks it (``leanops.monitoring.assess_batch``: feature drift, the champion's
prediction drift and, with labels, its performance), against a champion trained as the retrain flow
trains (``leanops.features.build_feature_set`` + ``leanops.modeling.fit_models`` on a six-month
window, reference = ``leanops.registration.reference_sample``). Two champion histories:

- ``fresh``: the champion was trained on the six months just before the month (the demo today, where
  every month retrained);
- ``chain``: the demo's loop per lever: the first champion is January-June, and a month that drifts
  retrains on the six months ending with it (assumed promoted), so a quiet lever keeps older champions.

Each lever is a set of ``spec.drift`` overrides. The table gives, per month and lever, the
(importance-weighted where set) share of drifted features, the drifted features, the prediction
drift score and the verdict; then how many months drifted per lever. A per-season reference (each month
against the same season a year before) cannot be measured here: the data hold one year.
"""

from __future__ import annotations

import argparse
import subprocess
import time
from functools import lru_cache
from pathlib import Path

import pandas as pd

from leanops import datasets, monitoring, registration
from leanops.features import build_feature_set
from leanops.modeling import evaluate, fit_models
from leanops.results import Batch
from leanops.spec import Spec, load_spec

SPEC_PATH = Path(__file__).resolve().parent.parent / "specs" / "flights-delay.yaml"
MONTHS = range(7, 13)
WINDOW = 6

# name -> spec.drift overrides on top of the spec file's drift section. t: per-feature threshold (n: numeric
# only, Wasserstein in reference stds; categorical features keep t), s: dataset_drift_share, p: prediction_threshold.
LEVERS: dict[str, dict] = {
    "before: t0.1 s0.3 p0.1": {"threshold": 0.1, "numeric_threshold": None, "dataset_drift_share": 0.3, "prediction_threshold": 0.1},
    "weighted t0.1 s0.3 p0.1": {"threshold": 0.1, "numeric_threshold": None, "dataset_drift_share": 0.3, "prediction_threshold": 0.1, "weight_by_importance": True},
    "weighted t0.2 s0.3 p0.1": {"threshold": 0.2, "numeric_threshold": None, "dataset_drift_share": 0.3, "prediction_threshold": 0.1, "weight_by_importance": True},
    "t0.2 s0.5 p0.1": {"threshold": 0.2, "numeric_threshold": None, "dataset_drift_share": 0.5, "prediction_threshold": 0.1},
    "t0.1 n1.0 s0.05 p0.1": {"threshold": 0.1, "numeric_threshold": 1.0, "dataset_drift_share": 0.05, "prediction_threshold": 0.1},
    "t0.1 n1.0 s0.05 p0.35": {"threshold": 0.1, "numeric_threshold": 1.0, "dataset_drift_share": 0.05, "prediction_threshold": 0.35},
}


def with_drift(spec: Spec, overrides: dict) -> Spec:
    return spec.model_copy(update={"drift": spec.drift.model_copy(update=overrides)})


@lru_cache(maxsize=None)
def champion(last_month: int, spec_path: str = str(SPEC_PATH)):
    """(model, holdout metrics, reference sample, holdout, importance) trained on the window ending with ``last_month``."""
    spec = load_spec(spec_path)
    months = list(range(last_month - WINDOW + 1, last_month + 1))
    started = time.perf_counter()
    features = build_feature_set(Batch(f"months {months}", f"m{months}", datasets.flights(months)), spec)
    trained = fit_models(features, spec)
    metrics = evaluate(trained, features, spec).model
    print(f"  trained on 2013-{months[0]:02d}..{months[-1]:02d} in {time.perf_counter() - started:.0f} s (roc_auc {metrics['roc_auc']:.3f})", flush=True)
    holdout = features.X_holdout.assign(**{spec.target.name: features.y_holdout.to_numpy()})
    return trained.model, metrics, registration.reference_sample(features, spec), holdout, trained.feature_importance


def check(month: int, trained_through: int, spec: Spec):
    model, metrics, reference, holdout, importance = champion(trained_through)
    batch = datasets.flights([month])
    return monitoring.assess_batch(batch, reference, model, metrics, importance, spec, holdout=holdout).result


def row(month: int, trained_through: int, lever: str, result) -> dict:
    perf = result.performance
    return {
        "month": f"2013-{month:02d}",
        "champion": f"..{trained_through:02d}",
        "lever": lever,
        "share": round(result.drift_share, 3),
        "drifted features": ",".join(result.drifted_features),
        "prediction": round(result.prediction_drift_score, 3),
        "degraded": bool(perf and perf.degraded),
        "verdict": result.status,
    }


def run(regime: str, spec: Spec) -> list[dict]:
    rows = []
    for lever, overrides in LEVERS.items():
        lever_spec = with_drift(spec, overrides)
        trained_through = 6
        for month in MONTHS:
            if regime == "fresh":
                trained_through = month - 1
            result = check(month, trained_through, lever_spec)
            rows.append(row(month, trained_through, lever, result))
            if regime == "chain" and result.status == "drift":
                trained_through = month
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--regime", choices=["fresh", "chain", "both"], default="both")
    args = parser.parse_args(argv)
    print("uptime before:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    started = time.perf_counter()
    spec = load_spec(SPEC_PATH)
    pd.set_option("display.width", 250, "display.max_colwidth", 60, "display.max_rows", 500)
    regimes = ["fresh", "chain"] if args.regime == "both" else [args.regime]
    for regime in regimes:
        table = pd.DataFrame(run(regime, spec))
        print(f"\n== {regime} champion ==")
        print(table.to_string(index=False))
        drifted = table.assign(d=table["verdict"] == "drift").groupby("lever", sort=False)["d"].sum().astype(int)
        print(f"\nmonths (of {len(MONTHS)}) that drift, {regime} champion:")
        print(drifted.to_string())
    print(f"\n{time.perf_counter() - started:.0f} s; uptime after:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
