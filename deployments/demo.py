"""The whole lifecycle on the embedded stack: `make demo` (or `python -m deployments.demo`).

The flights of 2013 arrive month by month. January-June land in S3 and train the first champion
(promoted by the auto-approving promote deployment). Then each month from July lands as a new object:
the bridge turns the S3 notification into an event, drift-monitor runs, where drift is detected a
retrain follows on the spec's window of landed batches, and promote decides. Everything below is
triggered by deployments and events, exactly as in production; this script only lands the data,
waits, and reads what happened. The stack stays up afterwards for the Prefect and MLflow UIs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
MODEL = "flights-delay"
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "CRASHED"}


def _client_env(settings) -> dict[str, str]:
    from infra import services
    from infra.stack import child_env

    return {**child_env(settings), **services.prefect_env(settings.home, settings.resolved_prefect_api_url)}


def deploy(settings) -> None:
    """Create or update every deployment of prefect.yaml on the local server."""
    from infra import services

    started = time.monotonic()
    completed = subprocess.run(  # noqa: S603 - fixed argv
        [str(services.BIN / "prefect"), "--no-prompt", "deploy", "--all", "--prefect-file", str(ROOT / "prefect.yaml")],
        cwd=ROOT, env={**os.environ, **_client_env(settings)}, capture_output=True, text=True, timeout=600,
    )
    if completed.returncode != 0:
        raise SystemExit(f"prefect deploy failed:\n{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}")
    print(f"  deployments from prefect.yaml      {time.monotonic() - started:5.1f} s")


class Runs:
    """Reads flow runs from the Prefect API."""

    def __init__(self, api: str):
        self.http = httpx.Client(base_url=api, timeout=30)

    def of_deployment(self, flow: str, deployment: str, since: datetime) -> list[dict]:
        body = {
            "flows": {"name": {"any_": [flow]}},
            "deployments": {"name": {"any_": [deployment]}},
            "flow_runs": {"expected_start_time": {"after_": since.isoformat()}},
            "sort": "EXPECTED_START_TIME_ASC",
            "limit": 50,
        }
        response = self.http.post("/flow_runs/filter", json=body)
        response.raise_for_status()
        return response.json()

    def wait_for(self, flow: str, deployment: str, since: datetime, timeout: float, where=lambda run: True) -> dict | None:
        """The first matching run, once it is finished; None if none was created within ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            matching = [r for r in self.of_deployment(flow, deployment, since) if where(r)]
            finished = [r for r in matching if r["state_type"] in TERMINAL]
            if matching and len(finished) == len(matching):
                completed = [r for r in finished if r["state_type"] == "COMPLETED"]
                return (completed or finished)[-1]
            time.sleep(2)
        return None


def land(month: int, settings) -> str:
    from leanops import datasets, storage

    uri = f"s3://{settings.s3_bucket}/{settings.s3_incoming_prefix}{MODEL}/2013-{month:02d}.parquet"
    storage.write_table(datasets.flights([month]), uri)
    return uri


def wait_out_cooldown(settings) -> None:
    """Batches land a month apart; the demo lands them a minute or two apart. Like a month would, let
    the spec's retrain cooldown (one minute in the demo spec) lapse before the next batch lands, or the
    drift it may cause would be turned away by the cooldown the previous retrain started."""
    from leanops.cooldown import retrain_ready_at
    from leanops.spec import load_spec
    from tasks.cooldown import last_retrain_at

    spec = load_spec(MODEL, settings.specs_dir)
    ready_at = retrain_ready_at(last_retrain_at(spec), spec.retrain_window.cooldown_minutes)
    wait = (ready_at - datetime.now(timezone.utc)).total_seconds() if ready_at else 0.0
    if wait > 0:
        print(f"  (retrain cooldown of {spec.retrain_window.cooldown_minutes:g} min: next month lands in {wait:.0f} s)")
        time.sleep(wait)


def champion_summary() -> tuple[str, float | None]:
    from leanops import registry

    champion = registry.get_alias(MODEL, registry.CHAMPION)
    return (champion.version, champion.metrics.get("roc_auc")) if champion else ("-", None)


def story(settings, months: list[int]) -> list[dict]:
    from deployments import demo_report
    from leanops import drift, monitoring, registry

    runs = Runs(settings.resolved_prefect_api_url)
    t0 = datetime.now(timezone.utc)
    print("\nJanuary-June land in S3 (no champion yet: their drift checks say so) ...")
    for month in range(1, 7):
        land(month, settings)
    for month in range(1, 7):
        key = f"{settings.s3_incoming_prefix}{MODEL}/2013-{month:02d}.parquet"
        runs.wait_for("drift-monitor", "on-new-batch", t0, 600, lambda r, k=key: r["parameters"].get("key") == k)

    print("First retrain on the landed window (retrain/on-schedule, run by hand) ...")
    t1 = datetime.now(timezone.utc)
    from prefect.deployments import run_deployment

    first = run_deployment("retrain/on-schedule", parameters={"spec": MODEL, "reason": "manual"}, timeout=1200)
    print(f"  retrain: {first.state.name}")
    promoted = runs.wait_for("promote", "on-new-challenger", t1, 600)
    print(f"  promote: {promoted['state_name'] if promoted else 'no run'}; champion v{champion_summary()[0]}")

    rows = []
    for month in months:
        wait_out_cooldown(settings)
        before = champion_summary()[0]
        versions_before = len(registry.list_versions(MODEL))
        t_month = datetime.now(timezone.utc)
        uri = land(month, settings)
        key = uri.split("/", 3)[3]
        print(f"2013-{month:02d} lands: {uri}")
        check = runs.wait_for("drift-monitor", "on-new-batch", t_month, 600, lambda r, k=key: r["parameters"].get("key") == k)
        history = drift.read_history(monitoring.history_uri(MODEL))
        row = history[history["batch_uri"] == uri].tail(1)
        drifted = bool(len(row)) and row["status"].iloc[0] == "drift"
        action = "no drift: nothing to do"
        if check is None or check["state_type"] != "COMPLETED":
            action = f"drift check {check['state_name'] if check else 'never ran'}"
        elif drifted:
            retrain = runs.wait_for("retrain", "on-drift", t_month, 900)
            registered = len(registry.list_versions(MODEL)) > versions_before
            promote = runs.wait_for("promote", "on-new-challenger", t_month, 600) if registered else None
            after = champion_summary()[0]
            if retrain is None:
                action = "drift, but no retrain ran"
            elif not registered:
                action = f"retrain {retrain['state_name'].lower()}, no challenger registered (cooldown?)"
            elif promote is None:
                action = f"retrain {retrain['state_name'].lower()}, nothing new to promote"
            else:
                action = f"retrained; promoted v{after}" if after != before else "retrained; challenger rejected"
        version, holdout = champion_summary()
        metrics = registry.drift_check_metrics(MODEL, uri)
        rows.append({
            "month": f"2013-{month:02d}",
            "drift share": float(row["drift_share"].iloc[0]) if len(row) else None,
            "drifted features": row["drifted_features"].iloc[0] if len(row) else "",
            "prediction drift": ("yes" if row["prediction_drift"].iloc[0] else "no") if len(row) else "-",
            "action": action,
            "champion": f"v{version}",
            "champion roc_auc (holdout)": holdout,
            "checked-by roc_auc on month": metrics.get("batch_roc_auc"),
        })
        print("  " + demo_report.line(rows[-1]))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deployments.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--months", default="7-12", help="months that land after the first champion (default 7-12)")
    args = parser.parse_args(argv)
    first, last = (int(x) for x in args.months.split("-"))

    from infra import stack
    from leanops.settings import get_settings

    settings = get_settings()
    os.environ.update(_client_env(settings))
    stack.up(settings)
    deploy(settings)
    rows = story(settings, list(range(first, last + 1)))

    from deployments import demo_report

    print("\n" + demo_report.table(rows))
    print(f"\nPrefect UI: http://{settings.host}:{settings.prefect_port}   MLflow UI: {settings.resolved_mlflow_tracking_uri}")
    print("The stack keeps running for the UIs; stop it with `make stack-down`.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
