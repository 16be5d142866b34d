"""Benchmark: S3 put -> drift-monitor flow run Running, through the bridge, the trigger and a worker.

Needs the local stack running (`make stack-up`: moto, Prefect, the bridge and a process worker with
1 s polls) and the deployments (`prefect deploy --all`; this script runs it if drift-monitor/on-new-batch
is missing). Puts N objects one at a time under the incoming prefix, each for a throwaway model with a
spec but no champion (the check stops at "no champion", a cheap run), waits for its run to finish,
and prints one table: each hop's share and the total, p50 / p95 / max, against the targets of issue 5.

Hops, all stamped by the servers except the put (same clock: everything runs on this machine):
  put -> event received   moto's notification, SQS, the bridge's long poll, POST /api/events
  event -> run created    the trigger service and the run-deployment action
  created -> Pending      the worker's poll (PREFECT_WORKER_QUERY_SECONDS) and the concurrency check
  Pending -> Running      the flow-run process starting: imports, the pull step, loading the flow

Cold and warm starts are measured side by side, interleaved: cold runs start a new
``python -m prefect.engine`` (the fork server's socket is moved aside for them), warm runs are forked
from the fork server (deployments/forkserver.py) with Prefect and the libraries already imported.

Then what a user actually waits for (issue 13): S3 put -> ``leanops.drift.checked`` received by the
server, for monthly flights batches (~27,000 rows each, a different month per put, so no check is a
cache hit) of a throwaway model with a champion (trained here on 18,000 flights of January-June and
registered as champion directly, so no promote run shares the machine). Its spec is the flights spec
with thresholds no month reaches (no drift.detected, so no retrain and no degradation rollback starts):
every check is conclusive and attaches its report, after the verdict. Warm starts; one put at a time.

    .venv/bin/python bench/bench_events.py --objects 0 --cold-objects 0 --drift-puts 10   # the verdict only
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_bridge import _pct  # noqa: E402

DEPLOYMENT = "drift-monitor/on-new-batch"
TARGETS = {"p50": 3.0, "p95": 6.0}
VERDICT_TARGET_P95 = 4.0  # issue 13: S3 put -> leanops.drift.checked
VERDICT_MONTHS = (7, 8, 9, 10, 11, 12, 1, 2, 3, 4, 5, 6)
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "CRASHED"}


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _deployment_id(client: httpx.Client, api: str, settings) -> str:
    answer = client.get(f"{api}/deployments/name/{DEPLOYMENT}")
    if answer.status_code == 404:
        print(f"{DEPLOYMENT} is not deployed: running `prefect deploy --all` ...", flush=True)
        subprocess.run(  # noqa: S603 - fixed argv
            [str(Path(sys.executable).parent / "prefect"), "deploy", "--all", "--no-prompt"],
            cwd=ROOT, env={**os.environ, **settings.prefect_client_env(api)}, check=True, capture_output=True, timeout=600,
        )
        answer = client.get(f"{api}/deployments/name/{DEPLOYMENT}")
    answer.raise_for_status()
    return answer.json()["id"]


def _run_for(client: httpx.Client, api: str, deployment_id: str, key: str, timeout: float = 120.0) -> dict:
    """The flow run created for ``key``, once it has finished."""
    deadline = time.monotonic() + timeout
    body = {"flow_runs": {"deployment_id": {"any_": [deployment_id]}}, "sort": "EXPECTED_START_TIME_DESC", "limit": 20}
    while time.monotonic() < deadline:
        answer = client.post(f"{api}/flow_runs/filter", json=body)
        answer.raise_for_status()
        for run in answer.json():
            if run["parameters"].get("key") == key and run["state_type"] in TERMINAL:
                return run
        time.sleep(0.1)
    raise TimeoutError(f"no finished run for {key} within {timeout:.0f} s")


def _hops(client: httpx.Client, api: str, run: dict, uri: str, put_at: float) -> dict[str, float]:
    states = client.get(f"{api}/flow_run_states/", params={"flow_run_id": run["id"]}).json()
    first = {}
    for state in sorted(states, key=lambda s: _ts(s["timestamp"])):
        first.setdefault(state["type"], _ts(state["timestamp"]))
    if "RUNNING" not in first:
        raise RuntimeError(f"run {run['name']} for {uri} never ran: {run['state_name']}")
    answer = client.post(f"{api}/events/filter", json={"filter": {"resource": {"id": [uri]}}, "limit": 5})
    answer.raise_for_status()
    received = min(_ts(e["received"]) for e in answer.json()["events"])
    created = _ts(run["created"])
    return {
        "put -> event received": received - put_at,
        "event -> run created": created - received,
        "created -> Pending": first["PENDING"] - created,
        "Pending -> Running": first["RUNNING"] - first["PENDING"],
        "S3 put -> Running (total)": first["RUNNING"] - put_at,
    }


class ColdStarts:
    """Makes the next runs start cold: moves the fork server's socket aside, so the deployments' command
    (deployments/engine_command.py) finds nothing there and runs ``python -m prefect.engine`` itself.
    The server keeps listening on the moved socket; moving it back makes runs warm again."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        self.aside = socket_path.with_name(socket_path.name + ".aside")

    def __enter__(self) -> None:
        self.socket_path.rename(self.aside)

    def __exit__(self, *_exc: object) -> None:
        self.aside.rename(self.socket_path)


def _table(title: str, samples: list[dict[str, float]]) -> tuple[float, float]:
    print(f"\n{title}: {len(samples)} objects; seconds")
    print(f"{'hop':<28}{'p50':>8}{'p95':>8}{'max':>8}")
    for hop in samples[0]:
        values = [s[hop] for s in samples]
        print(f"{hop:<28}{statistics.median(values):8.2f}{_pct(values, 0.95):8.2f}{max(values):8.2f}")
    total = [s["S3 put -> Running (total)"] for s in samples]
    return statistics.median(total), _pct(total, 0.95)


def _register_verdict_champion(settings, model: str) -> Path:
    """A throwaway model: its spec in the specs folder (thresholds no month reaches) and a champion trained
    in this process through the library (no registration event, so no promote run starts)."""
    from leanops import datasets, features, lineage, modeling, registration, registry, storage
    from leanops.results import Batch
    from leanops.spec import load_spec

    spec_path = settings.specs_dir / f"{model}.yaml"
    spec = yaml.safe_load((settings.specs_dir / "flights-delay.yaml").read_text())
    never = {"threshold": 100.0, "numeric_threshold": 100.0, "prediction_threshold": 100.0, "performance_tolerance": 1.0}
    spec_path.write_text(yaml.safe_dump({**spec, "name": model, "drift": {**spec["drift"], **never}}))
    model_spec = load_spec(spec_path)
    uri = f"s3://{settings.s3_bucket}/training/{model}/2013-h1.parquet"
    storage.write_table(datasets.flights_sample(range(1, 7), rows_per_month=3000, seed=13), uri, settings)
    frame, fingerprint = storage.read_table(uri, settings)
    feature_set = features.build_feature_set(Batch(uri, fingerprint, frame), model_spec)
    fitted = modeling.fit_models(feature_set, model_spec)
    evaluation = modeling.evaluate(fitted, feature_set, model_spec)
    run_lineage = lineage.build_lineage(uri, fingerprint, model_spec.spec_hash, None)
    registration.register_training(model_spec, fitted, evaluation, feature_set, run_lineage, "bench-events", alias=registry.CHAMPION)
    return spec_path


def _verdict_received(client: httpx.Client, api: str, model: str, uri: str, timeout: float = 300.0) -> float:
    """When the server received the leanops.drift.checked event of ``uri`` (its persister may show it seconds later)."""
    from leanops import events

    deadline = time.monotonic() + timeout
    body = {"filter": {"event": {"name": [events.DRIFT_CHECKED]}, "resource": {"id": [events.model_resource_id(model)]}}, "limit": 50}
    while time.monotonic() < deadline:
        answer = client.post(f"{api}/events/filter", json=body)
        answer.raise_for_status()
        found = [e for e in answer.json()["events"] if e["payload"].get("batch_uri") == uri]
        if found:
            return min(_ts(e["received"]) for e in found)
        time.sleep(0.2)
    raise TimeoutError(f"no {events.DRIFT_CHECKED} for {uri} within {timeout:.0f} s")


def measure_verdicts(client: httpx.Client, api: str, deployment_id: str, settings, puts: int) -> list[dict[str, float]]:
    """S3 put -> drift.checked (and -> Running, -> the run finished with its report) for ``puts`` monthly batches."""
    import io

    from leanops import datasets, storage

    model = f"bench-verdict-{uuid.uuid4().hex[:6]}"
    print(f"\ntraining a champion for {model} ...", flush=True)
    spec_path = _register_verdict_champion(settings, model)
    samples = []
    try:
        for i in range(puts):
            month = VERDICT_MONTHS[i % len(VERDICT_MONTHS)]
            frame = datasets.flights([month])
            if i >= len(VERDICT_MONTHS):  # a second round: other rows, so the check is no cache hit
                frame = frame.sample(frac=0.97, random_state=i).sort_index()
            payload = io.BytesIO()
            frame.to_parquet(payload, index=False)
            key = f"{settings.s3_incoming_prefix}{model}/2013-{month:02d}-{i:02d}{settings.s3_incoming_suffix}"
            uri = f"s3://{settings.s3_bucket}/{key}"
            put_at = time.time()
            storage.write_bytes(uri, payload.getvalue(), settings)
            run = _run_for(client, api, deployment_id, key, timeout=600)
            if run["state_type"] != "COMPLETED":
                raise RuntimeError(f"the check of {uri} ended {run['state_name']}")
            checked = _verdict_received(client, api, model, uri)
            hops = _hops(client, api, run, uri, put_at)
            samples.append({
                **{hop: seconds for hop, seconds in hops.items() if hop != "S3 put -> Running (total)"},
                "Running -> drift.checked": checked - (put_at + hops["S3 put -> Running (total)"]),
                "S3 put -> drift.checked": checked - put_at,
                "S3 put -> report attached": _ts(run["end_time"]) - put_at,
            })
            print(f"  {i + 1:>2}/{puts}  {len(frame):,} rows  put -> drift.checked {checked - put_at:.2f} s", flush=True)
    finally:
        spec_path.unlink(missing_ok=True)
    return samples


def _verdict_table(samples: list[dict[str, float]]) -> bool:
    print(f"\nverdict: S3 put -> leanops.drift.checked, {len(samples)} monthly flights batches; seconds")
    print(f"{'hop':<28}{'p50':>8}{'p95':>8}{'max':>8}")
    for hop in samples[0]:
        values = [s[hop] for s in samples]
        print(f"{hop:<28}{statistics.median(values):8.2f}{_pct(values, 0.95):8.2f}{max(values):8.2f}")
    p95 = _pct([s["S3 put -> drift.checked"] for s in samples], 0.95)
    met = p95 <= VERDICT_TARGET_P95
    print(f"target (issue 13): p95 <= {VERDICT_TARGET_P95:.1f} s: {'met' if met else 'MISSED'} ({p95:.2f} s)")
    return met


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=20, help="objects measured with warm starts")
    parser.add_argument("--cold-objects", type=int, default=10, help="objects measured with cold starts, interleaved")
    parser.add_argument("--drift-puts", type=int, default=10, help="monthly batches measured S3 put -> drift.checked (0: none)")
    args = parser.parse_args()
    if 0 < args.drift_puts < 8:
        print(f"--drift-puts {args.drift_puts}: a smoke run; a p95 needs at least 8 puts", file=sys.stderr)

    from infra.stack import child_env
    from leanops import storage
    from leanops.settings import get_settings

    settings = get_settings()
    # moto takes any credentials, but boto3 signs nothing without some: the stack's placeholders.
    os.environ.update({k: v for k, v in child_env(settings).items() if k.startswith("AWS_")})
    api = settings.resolved_prefect_api_url
    # The production profile's APIs want basic auth (LEANOPS_PREFECT_AUTH_STRING); the embedded one none.
    user, _, password = settings.prefect_auth_string.get_secret_value().partition(":") if settings.prefect_auth_string else ("", "", "")
    client = httpx.Client(timeout=15, auth=(user, password) if password else None)
    deployment_id = _deployment_id(client, api, settings)
    socket_path = settings.resolved_fork_server_socket
    if args.cold_objects and not socket_path.exists():
        print(f"no fork server socket at {socket_path}: start the stack (`make stack-up`)", file=sys.stderr)
        return 2
    model = f"bench-events-{uuid.uuid4().hex[:6]}"
    # The worker finds a model's spec by name in the specs folder; this one lives only while we measure.
    spec_path = settings.specs_dir / f"{model}.yaml"
    spec = yaml.safe_load((settings.specs_dir / "flights-delay.yaml").read_text())
    spec_path.write_text(yaml.safe_dump({**spec, "name": model}))
    # Cold and warm objects alternate (while cold ones remain), so both see the same machine load.
    plan = []
    for i in range(max(args.objects, args.cold_objects)):
        if i < args.cold_objects:
            plan.append("cold")
        if i < args.objects:
            plan.append("warm")
    samples: dict[str, list[dict[str, float]]] = {"cold": [], "warm": []}
    loads = []
    try:
        for i, mode in enumerate(plan):
            key = f"{settings.s3_incoming_prefix}{model}/batch-{i:02d}{settings.s3_incoming_suffix}"
            uri = f"s3://{settings.s3_bucket}/{key}"
            with ColdStarts(socket_path) if mode == "cold" else contextlib.nullcontext():
                put_at = time.time()
                storage.write_bytes(uri, b"PAR1 bench", settings)
                # One at a time: the next put waits for this run to finish, so runs never share the CPU.
                run = _run_for(client, api, deployment_id, key)
            samples[mode].append(_hops(client, api, run, uri, put_at))
            loads.append(os.getloadavg()[0])
            total = samples[mode][-1]["S3 put -> Running (total)"]
            print(f"  {i + 1:>2}/{len(plan)}  {mode}  put -> Running {total:.2f} s", flush=True)
    finally:
        spec_path.unlink(missing_ok=True)

    verdicts = measure_verdicts(client, api, deployment_id, settings, args.drift_puts) if args.drift_puts else []
    loads.append(os.getloadavg()[0])

    print(f"\nload average {statistics.median(loads):.1f} (median over the runs) on {os.cpu_count()} cores")
    print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    cold = _table("cold: each run in a new `python -m prefect.engine`", samples["cold"]) if samples["cold"] else None
    warm = _table("warm: each run forked from the fork server", samples["warm"]) if samples["warm"] else None
    if warm:
        print(f"\n{'S3 put -> Running':<28}{'p50':>8}{'p95':>8}")
        if cold:
            print(f"{'cold':<28}{cold[0]:8.2f}{cold[1]:8.2f}")
        print(f"{'warm':<28}{warm[0]:8.2f}{warm[1]:8.2f}")
        if cold:
            print(f"{'warm / cold':<28}{warm[0] / cold[0]:8.2f}{warm[1] / cold[1]:8.2f}")
        print(f"{'target (issue 5)':<28}{TARGETS['p50']:8.2f}{TARGETS['p95']:8.2f}")
        print(f"{'warm / target':<28}{warm[0] / TARGETS['p50']:8.2f}{warm[1] / TARGETS['p95']:8.2f}")
        met = warm[0] <= TARGETS["p50"] and warm[1] <= TARGETS["p95"]
        print(f"warm starts {'meet' if met else 'MISS'} the targets")
    if verdicts:
        _verdict_table(verdicts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
