"""The whole lifecycle on the embedded stack: `make demo` (or `python -m deployments.demo`).

The flights of 2013 arrive month by month and every decision leanops makes happens at least once:

1. January-June land in S3; a retrain started by hand trains the first champion, which the
   auto-approving promote deployment promotes.
2. July-December land one by one. The bridge turns each S3 notification into an event, drift-monitor
   checks the month against the champion; a drift starts a retrain on the spec's window of landed
   months and promote judges the challenger with its gates. Quiet months change nothing.
3. December is exported again without its weather join: the contract rejects it, the champion stays.
4. October's flights land again with labels from a faulty feed, on which the champion degrades and
   the previous champion does not: the degradation event starts a rollback.
5. The rolled-back version is offered for promotion again. A version a rollback moved away from
   returns only by a person's decision: the run pauses on its Resume form, and the demo answers it
   through the Prefect API as the form's Resume button does.

Everything is triggered by deployments and events, exactly as in production; this script only lands
data (two made-up batches among them), starts what a person would start by hand, waits, and reads
what happened. The stack stays up afterwards for the Prefect and MLflow UIs.
"""

from __future__ import annotations

import argparse
import os
import re
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
            time.sleep(1)
        return None

    def read(self, run_id) -> dict:
        response = self.http.get(f"/flow_runs/{run_id}")
        response.raise_for_status()
        return response.json()

    def wait_until(self, run_id, states: set[str], timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            run = self.read(run_id)
            if run["state_type"] in states | TERMINAL or time.monotonic() > deadline:
                return run
            time.sleep(0.5)


def land(frame, name: str, settings) -> str:
    from leanops import storage

    uri = f"s3://{settings.s3_bucket}/{settings.s3_incoming_prefix}{MODEL}/{name}.parquet"
    storage.write_table(frame, uri)
    return uri


def wait_out_cooldown(settings) -> None:
    """Batches land a month apart; the demo lands them a minute or two apart. Like a month would, let
    the spec's retrain cooldown (one minute in the demo spec) lapse before the next batch lands, or the
    drift it may cause would be turned away by the cooldown the previous retrain started."""
    from leanops.cooldown import retrain_ready_at
    from tasks.cooldown import last_retrain_at

    spec = model_spec(settings)
    ready_at = retrain_ready_at(last_retrain_at(spec), spec.retrain_window.cooldown_minutes)
    wait = (ready_at - datetime.now(timezone.utc)).total_seconds() if ready_at else 0.0
    if wait > 0:
        print(f"  (retrain cooldown of {spec.retrain_window.cooldown_minutes:g} min: the next batch lands in {wait:.0f} s)")
        time.sleep(wait)


def model_spec(settings):
    from leanops.spec import load_spec

    return load_spec(MODEL, settings.specs_dir)


def champion():
    from leanops import registry

    return registry.get_alias(MODEL, registry.CHAMPION)


def describe(change) -> str:
    """One alias-history entry in a few words."""
    if change.action == "promoted":
        return f"promoted v{change.version}"
    if change.action == "rejected":
        gates = change.reason.removeprefix("failed gates: ").split("; ")
        names = (re.sub(r"\[.*?\]", "", gate.split(" (")[0]) for gate in gates)
        return f"challenger v{change.version} rejected by its gates: {', '.join(names)}"
    if change.action == "rolled_back":
        return f"rolled back v{change.champion_before} -> v{change.version}"
    return f"{change.action} v{change.version}"


class Story:
    """Lands batches, waits for the runs they cause, and keeps one table row per batch."""

    def __init__(self, settings):
        self.settings = settings
        self.runs = Runs(settings.resolved_prefect_api_url)
        self.rows: list[dict] = []

    def alias_changes(self) -> list:
        from leanops import aliases

        return aliases.alias_history(MODEL)

    def first_champion(self) -> None:
        from prefect.deployments import run_deployment

        since = datetime.now(timezone.utc)
        print("\nJanuary-June land in S3 (no champion yet: their drift checks say so) ...")
        from deployments import demo_batches

        keys = [land(demo_batches.month(m), f"2013-{m:02d}", self.settings).split("/", 3)[3] for m in range(1, 7)]
        for key in keys:
            self.runs.wait_for("drift-monitor", "on-new-batch", since, 600, lambda r, k=key: r["parameters"].get("key") == k)
        print("First retrain on the landed window (retrain/on-schedule, run by hand) ...")
        started = datetime.now(timezone.utc)
        first = run_deployment("retrain/on-schedule", parameters={"spec": MODEL, "reason": "manual"}, timeout=1200)
        self.runs.wait_for("promote", "on-new-challenger", started, 600)
        self.record("2013-01..06", None, f"first retrain ({first.state.name.lower()}); " + self.since_changes(0))

    def since_changes(self, count_before: int) -> str:
        changes = self.alias_changes()[count_before:]
        return "; ".join(describe(c) for c in changes)

    def landing(self, name: str, frame, label: str, may_drift: bool = True) -> None:
        """Land one batch and wait for everything it starts: the drift check, a retrain and a promotion
        when it drifts, a rollback when the champion degrades on its labels."""
        from leanops import drift, drift_log, monitoring, registry

        if may_drift:
            wait_out_cooldown(self.settings)
        changes_before = len(self.alias_changes())
        versions_before = len(registry.list_versions(MODEL))
        holder = champion()
        since = datetime.now(timezone.utc)
        uri = land(frame, name, self.settings)
        key = uri.split("/", 3)[3]
        print(f"{label} lands: {uri}")
        check = self.runs.wait_for("drift-monitor", "on-new-batch", since, 600, lambda r: r["parameters"].get("key") == key)
        if check is None or check["state_type"] != "COMPLETED":
            state = self.runs.read(check["id"])["state"] if check else None
            why = (state or {}).get("message") or "no drift check ran"
            self.record(label, None, f"batch rejected, champion unchanged: {short_reason(why)}")
            return
        row = drift.read_history(monitoring.history_uri(MODEL)).query("batch_uri == @uri").tail(1)
        found: list[str] = []
        if len(row) and row["status"].iloc[0] == "drift":
            retrain = self.runs.wait_for("retrain", "on-drift", since, 900)
            if len(registry.list_versions(MODEL)) > versions_before:
                self.runs.wait_for("promote", "on-new-challenger", since, 600)
            elif retrain is not None:
                found.append(f"retrain {retrain['state_name'].lower()}, no challenger registered")
        metrics = drift_log.drift_check_metrics(MODEL, uri)
        spec = model_spec(self.settings)
        primary = spec.metric.primary
        batch_value = metrics.get(f"batch_{primary}")
        if batch_value is not None and batch_value < holder.metrics[primary] - spec.drift.performance_tolerance:
            found.append(f"champion degraded ({primary} {batch_value:.3f} vs {holder.metrics[primary]:.3f} on its holdout)")
            self.runs.wait_for("rollback", "on-degraded", since, 300)
        found.append(self.since_changes(changes_before))
        what = "; ".join(f for f in found if f)
        if len(row) and row["status"].iloc[0] == "drift":
            what = f"drift -> retrain -> {what or 'nothing new'}"
        self.record(label, uri, what or "no drift: nothing to do")

    def approval(self, version: str) -> None:
        """Offer ``version`` for promotion again and answer its Resume form through the API."""
        from prefect.deployments import run_deployment

        changes_before = len(self.alias_changes())
        print(f"v{version} is offered for promotion again (promote/on-new-challenger, run by hand) ...")
        run = run_deployment("promote/on-new-challenger", parameters={"spec": MODEL, "version": version}, timeout=0)
        state = self.runs.wait_until(run.id, {"PAUSED"}, 600)
        if state["state_type"] != "PAUSED":
            asked = f"promote never asked a person ({state['state_name'].lower()}): "
            self.record(f"approval of v{version}", None, asked + self.since_changes(changes_before))
            return
        url = flow_run_url(self.settings, run.id)
        print(f"  a person's decision is needed; the Resume form: {url}")
        answer = {"approve": True, "approver": "demo, answering the Resume form",
                  "reason": "the 2013-10 labels came from a faulty feed: v" + version + " is sound"}
        resume(run.id, answer)
        print(f"  answered through the Prefect API: {answer}")
        final = self.runs.wait_until(run.id, set(), 600)
        verdict = "approved" if answer["approve"] else "rejected"
        asked = f"manual approval: a person {verdict} on the Resume form ({final['state_name'].lower()}); "
        self.record(f"approval of v{version}", None, asked + self.since_changes(changes_before), form=url)

    def record(self, batch: str, uri: str | None, what: str, form: str = "") -> None:
        from leanops import drift, drift_log, monitoring, registry

        holder = champion()
        row = drift.read_history(monitoring.history_uri(MODEL)).query("batch_uri == @uri").tail(1) if uri else ()
        metrics = drift_log.drift_check_metrics(MODEL, uri) if uri else {}
        self.rows.append({
            "batch": batch,
            "drift share": float(row["drift_share"].iloc[0]) if len(row) else None,
            "drifted features": row["drifted_features"].iloc[0] if len(row) else "",
            "prediction drift": metrics.get("prediction_drift_score"),
            "what happened": what,
            "champion": f"v{holder.version}" if holder else "-",
            "roc_auc on batch": metrics.get("batch_roc_auc"),
        })
        from deployments import demo_report

        print("  " + demo_report.line(self.rows[-1]) + (f"; form: {form}" if form else ""))


def short_reason(message: str) -> str:
    """A failed run's message in a table cell: the error, its first problem and how many more."""
    text = message.split("exception: ", 1)[-1]
    head, _, rest = text.partition("\n")
    head = re.sub(r"batch \S+ ", "", head)
    problems = [line.strip(" -") for line in rest.splitlines() if line.strip(" -")]
    more = f", +{len(problems) - 1} more" if len(problems) > 1 else ""
    return f"{head} {problems[0]}{more}" if problems else head


def flow_run_url(settings, run_id) -> str:
    """The flow run's page in the Prefect UI: where its Resume form is."""
    return f"http://{settings.host}:{settings.prefect_port}/runs/flow-run/{run_id}"


def resume(run_id, answer: dict) -> None:
    """What the UI's Resume button sends: the form's fields as run input."""
    from prefect.flow_runs import resume_flow_run

    deadline = time.monotonic() + 20
    while True:
        try:
            resume_flow_run(run_id, run_input=answer)
            return
        except RuntimeError:  # the form's schema is saved just after the pause: try again briefly
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def call_endpoint(settings, month: int = 7, timeout: float = 180.0) -> None:
    """The online endpoint (started with the stack) serves the champion it learnt of from the promotion
    event: print its URL and one real prediction for a flight of ``month``."""
    from deployments import demo_batches
    from infra.stack import endpoint_url
    from leanops.serving.requests import request_rows

    url = f"{endpoint_url(settings)}/models/{MODEL}/predict"
    row = request_rows(demo_batches.month(month).head(1), model_spec(settings))[0]
    print(f"Online endpoint: {url}")
    deadline = time.monotonic() + timeout
    while True:  # 503 until the endpoint has loaded the champion the promotion event told it about
        answer = httpx.post(url, json=row, timeout=30)
        if answer.status_code != 503 or time.monotonic() > deadline:
            break
        time.sleep(1)
    if answer.status_code != 200:
        print(f"  the endpoint answered {answer.status_code}: {answer.text[:500]}")
        return
    body = answer.json()
    flight = f"{row['carrier']} {row['origin']}->{row['dest']} at {row['time_hour']}"
    prediction = body["predictions"][0]
    print(f"  {flight}: P(late > 15 min) = {prediction['score']:.3f} from v{body['version']} (prediction id {prediction['id']})")


def story(settings, months: list[int]) -> list[dict]:
    from deployments import demo_batches
    from leanops import registry

    tale = Story(settings)
    tale.first_champion()
    call_endpoint(settings)
    for month in months:
        tale.landing(f"2013-{month:02d}", demo_batches.month(month), f"2013-{month:02d}")
    tale.landing("2013-12-reexport", demo_batches.lost_weather_join(12), "2013-12 re-export", may_drift=False)
    current = champion()
    previous = registry.get_alias(MODEL, registry.PREVIOUS_CHAMPION)
    if previous is None:
        print("no previous champion: nothing to roll back to, the rollback and approval steps are skipped")
        return tale.rows
    faulty = demo_batches.labels_against(10, registry.load_model(current), registry.load_model(previous), model_spec(settings))
    tale.landing("2013-10-relabelled", faulty, "2013-10 relabelled")
    if champion().version != current.version:
        tale.approval(current.version)
    return tale.rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deployments.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--months", default="7-12", help="months that land after the first champion (default 7-12)")
    args = parser.parse_args(argv)
    first, last = (int(x) for x in args.months.split("-"))

    from infra import stack
    from leanops.settings import get_settings

    started = time.monotonic()
    settings = get_settings()
    os.environ.update(_client_env(settings))
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # the demo loads two models to craft labels
    stack.up(settings)
    deploy(settings)
    rows = story(settings, list(range(first, last + 1)))

    from deployments import demo_report

    print("\n" + demo_report.table(rows))
    print("\n" + demo_report.decisions_seen(rows))
    print(f"\n{time.monotonic() - started:.0f} s in all")
    print(f"Prefect UI: http://{settings.host}:{settings.prefect_port}   MLflow UI: {settings.resolved_mlflow_tracking_uri}")
    print(f"Online endpoint: {stack.endpoint_url(settings)}/models/{MODEL}/predict   metrics: {stack.endpoint_url(settings)}/metrics")
    print("The stack keeps running for the UIs; stop it with `make stack-down`.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
