"""What the simulator measures on the running stack: CPU and memory of each service (psutil on its pid and
children), Prefect API latency (a few calls timed periodically), and at the end of a step the flow runs,
lags, database sizes, Redis memory and the MLflow registry."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

import httpx
import psutil

from leanops.settings import Settings
from sim.stack import Api

TERMINAL = ("COMPLETED", "FAILED", "CANCELLED", "CRASHED")


def parse_time(text: str | None) -> float | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() if text else None


def service_groups(settings: Settings) -> dict[str, list[int]]:
    """Pids to watch, grouped as the table shows them: each worker with its fork server (whose children are the flow runs)."""
    from infra import services, stack

    groups: dict[str, list[int]] = defaultdict(list)
    for service in stack.all_services(settings):
        pid = services.read_pid(service, settings.home)
        if pid is None:
            continue
        name = service.name
        if name.startswith(("fork-server-", "prefect-worker-")):
            name = f"worker {name.rsplit('-', 1)[1]} (+ fork server, flow runs)"
        groups[name].append(pid)
    return dict(groups)


@dataclass
class Usage:
    cpu: list[float] = field(default_factory=list)  # percent of one core
    rss: list[float] = field(default_factory=list)  # MB


class Sampler(threading.Thread):
    """Every ``period`` s: CPU and RSS per service group (with children), machine CPU busy share, and the
    latency of a few Prefect API calls on both API processes."""

    def __init__(self, settings: Settings, period: float = 3.0):
        super().__init__(daemon=True)
        self.settings, self.period = settings, period
        self.groups = service_groups(settings)
        self.usage: dict[str, Usage] = defaultdict(Usage)
        self.machine_busy: list[float] = []
        self.api_latency: list[float] = []
        self.stopping = threading.Event()
        self._processes: dict[int, psutil.Process] = {}
        self.apis = [Api(settings, i) for i in range(len(settings.prefect_api_urls))]

    def _process(self, pid: int) -> psutil.Process:
        if pid not in self._processes:
            self._processes[pid] = psutil.Process(pid)
            self._processes[pid].cpu_percent(None)  # the first reading is always 0: prime it
        return self._processes[pid]

    def _sample_resources(self) -> None:
        for group, pids in self.groups.items():
            cpu = rss = 0.0
            for pid in pids:
                try:
                    root = psutil.Process(pid)
                    tree = [root, *root.children(recursive=True)]
                except psutil.NoSuchProcess:
                    continue
                for process in tree:
                    try:
                        tracked = self._process(process.pid)
                        cpu += tracked.cpu_percent(None)
                        rss += tracked.memory_info().rss / 1e6
                    except psutil.NoSuchProcess:
                        self._processes.pop(process.pid, None)
            self.usage[group].cpu.append(cpu)
            self.usage[group].rss.append(rss)
        self.machine_busy.append(psutil.cpu_percent(None) / 100.0)

    def _sample_api(self) -> None:
        for api in self.apis:
            for method, path, body in (("POST", "/flow_runs/count", {}), ("POST", "/deployments/filter", {"limit": 5}), ("GET", "/health", None)):
                started = time.monotonic()
                try:
                    api.call(method, path, body)
                except httpx.HTTPError:
                    self.api_latency.append(float("inf"))  # counted: a failed call is the worst latency
                    continue
                self.api_latency.append(time.monotonic() - started)

    def run(self) -> None:
        psutil.cpu_percent(None)
        while not self.stopping.wait(self.period):
            self._sample_resources()
            self._sample_api()

    def restart_figures(self) -> None:
        """Forget what was sampled so far: a step's table covers that step's calibration, driving and drain,
        not the steps before it or its own first champions."""
        self.usage = defaultdict(Usage)  # replaced, not cleared: the sampling thread may be appending
        self.machine_busy = []
        self.api_latency = []

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=30)


# --- at the end of a step ----------------------------------------------------------------------------


def flow_runs_since(api: Api, since_iso: str) -> list[dict]:
    """Every flow run expected to start at or after ``since_iso`` (all deployments), oldest first.

    Paged by id, which is unique: paged by expected start time, which Prefect sorts without a tie-breaker,
    two runs with the same time on either side of a page boundary could come back once twice and once
    not at all."""
    runs: dict[str, dict] = {}
    offset = 0
    while True:
        body = {"flow_runs": {"expected_start_time": {"after_": since_iso}}, "sort": "ID_DESC", "limit": 200, "offset": offset}
        page = api.post("/flow_runs/filter", body).json()
        runs.update((run["id"], run) for run in page)
        offset += len(page)
        if len(page) < 200:
            return sorted(runs.values(), key=lambda run: (run["expected_start_time"] or "", run["id"]))


def landed_events_since(api: Api, since_iso: str, until_iso: str) -> dict[str, float]:
    """resource id (s3://bucket/key) -> when the bridge's leanops.batch.landed occurred."""
    body = {"filter": {"event": {"name": ["leanops.batch.landed"]}, "occurred": {"since": since_iso, "until": until_iso}}, "limit": 50}
    page = api.post("/events/filter", body).json()
    found: dict[str, float] = {}
    while True:
        for event in page["events"]:
            found.setdefault(event["resource"]["prefect.resource.id"], parse_time(event["occurred"]))
        if not page.get("next_page"):
            return found
        page = api.client.get(page["next_page"]).json()


def retrain_outcomes(api: Api, runs: list[dict]) -> dict[str, int]:
    """What each ended retrain run did, read from its task runs and the cooldown claim's log line:
    registered a version, found the same data already trained on (a cache hit on keys), skipped by the
    cooldown or by another retrain of the model running, retired, or ended otherwise (state type).
    Names of task runs are ``<task>-<n>`` or the task's own ``<task> <argument>``."""
    outcomes: dict[str, int] = defaultdict(int)
    for run in runs:
        if run["state_type"] not in TERMINAL:
            continue
        if run["state_type"] != "COMPLETED":
            outcomes[run["state_type"].lower()] += 1
            continue
        tasks = api.post("/task_runs/filter", {"flow_runs": {"id": {"any_": [run["id"]]}}, "limit": 200}).json()
        names = {task["name"].split(" ")[0].rsplit("-", 1)[0] for task in tasks}
        if "register_model" in names:
            outcomes["registered"] += 1
        elif "identify_batch" not in names:
            outcomes["retired: not retrained"] += 1
        elif "claim_retrain" not in names:
            outcomes["same data already trained on"] += 1
        else:  # it claimed and trained nothing: the claim's log line says why
            logs = api.post("/logs/filter", {"logs": {"flow_run_id": {"any_": [run["id"]]}}, "limit": 200}).json()
            said = " | ".join(log["message"] for log in logs)
            if "another retrain of this model" in said:
                outcomes["skipped: another retrain running"] += 1
            elif "cooldown" in said and "skipped" in said:
                outcomes["skipped: cooldown"] += 1
            else:
                outcomes["completed otherwise"] += 1
    return dict(outcomes)


def database_sizes(settings: Settings) -> dict[str, int]:
    import asyncpg

    async def sizes() -> dict[str, int]:
        connection = await asyncpg.connect(settings.named_database_url("postgres"))
        try:
            return {p: await connection.fetchval("SELECT pg_database_size($1)", settings.database_name(p)) for p in ("prefect", "mlflow")}
        finally:
            await connection.close()

    return asyncio.run(sizes())


def redis_memory(settings: Settings) -> tuple[int, int, int]:
    """(keys in our database, bytes their values take by MEMORY USAGE, the server's used_memory)."""
    import redis

    client = redis.Redis.from_url(settings.redis_url.get_secret_value())
    keys = list(client.scan_iter(count=1000))
    used = sum(client.memory_usage(key) or 0 for key in keys)
    return len(keys), used, int(client.info("memory")["used_memory"])


def mlflow_registry(settings: Settings) -> tuple[int, int]:
    """(registered models, model versions) through MLflow's REST API."""
    mlflow_auth = (settings.mlflow_username, settings.mlflow_password.get_secret_value())
    base = settings.resolved_mlflow_tracking_uri

    def count(path: str, key: str) -> int:
        total, token = 0, None
        while True:
            params = {"max_results": 1000 if "models/search" in path else 10000, **({"page_token": token} if token else {})}
            answer = httpx.get(f"{base}{path}", params=params, auth=mlflow_auth, timeout=60)
            answer.raise_for_status()
            body = answer.json()
            total += len(body.get(key, []))
            token = body.get("next_page_token")
            if not token:
                return total

    return count("/api/2.0/mlflow/registered-models/search", "registered_models"), count("/api/2.0/mlflow/model-versions/search", "model_versions")
