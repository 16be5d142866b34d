"""``python -m sim --models 25,50,100 --days 30``: a hundred models in fast time on the production profile.

One stack for the whole ladder (its own PostgreSQL databases, Redis database and ports; all dropped at the
end). For each model count: register the new models' first champions (retrain/on-schedule runs, promoted
by the registration trigger with auto-approval), measure what a drift check costs, derive the compression,
then drive simulated time: hourly batches into S3 (the bridge turns them into events, the trigger into
drift-monitor runs), weekly retrains at simulated week boundaries. A step ends at its last simulated hour,
at the wall-time budget, or when drift checks pile up (then the ladder stops, naming where they wait).
How schedules, cooldowns and trigger windows follow the simulated clock: sim/plan.py's docstring.
"""

from __future__ import annotations

import argparse
import math
import os
import secrets
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import httpx

from sim import measure, plan, world
from sim import stack as sim_stack
from sim.stack import Api

DRIFT = "drift-monitor/on-new-batch"
SCHEDULED_RETRAIN = "retrain/on-schedule"
SIM_COOLDOWN_MINUTES = 360.0  # a drift retrain at most every six simulated hours per model
POLL_SECONDS = 5.0


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat()


def say(text: str) -> None:
    print(text, flush=True)


@dataclass
class Step:
    n_models: int
    compression: plan.Compression | None = None
    started: float = 0.0
    ended: float = 0.0
    first_hour: int = 0  # the simulated clock runs on across steps: hour keys are never landed twice
    hours_reached: int = 0
    landed: dict[str, float] = field(default_factory=dict)  # key -> put time
    weekly_runs: int = 0
    stop_reason: str = ""
    bottleneck: str = "none"


class Simulation:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.run_id = secrets.token_hex(3)
        self.home = Path(args.home or Path.cwd() / ".leanops" / f"sim-{self.run_id}").resolve()
        self.specs_dir = self.home / "specs"
        self.specs_dir.mkdir(parents=True, exist_ok=True)
        self.settings = sim_stack.settings_for(self.run_id, self.home)
        self.names: list[str] = []
        self.pools: world.Pools | None = None
        self.putter = ThreadPoolExecutor(max_workers=4)
        self.errors: list[str] = []

    # --- models ---------------------------------------------------------------------------------------

    def write_specs(self, n_models: int, cooldown_real_minutes: float) -> None:
        self.names = [world.model_name(self.run_id, i) for i in range(n_models)]
        for name in self.names:
            world.write_spec(self.specs_dir, name, self.settings.s3_incoming_prefix, cooldown_real_minutes)

    def champion(self, name: str) -> str | None:
        mlflow_auth = (self.settings.mlflow_username, self.settings.mlflow_password.get_secret_value())
        answer = httpx.get(f"{self.settings.resolved_mlflow_tracking_uri}/api/2.0/mlflow/registered-models/alias",
                           params={"name": name, "alias": "champion"}, auth=mlflow_auth, timeout=30)
        return answer.json()["model_version"]["version"] if answer.status_code == 200 else None

    def register_first_champions(self, first: int, last: int) -> None:
        """Training data under each new model's prefix, a retrain/on-schedule run each; the registration trigger
        promotes them (auto-approval). Waits until every new model has a champion."""
        started = time.monotonic()
        new = self.names[first:last]
        for index, name in enumerate(new, start=first):
            world.land(world.training_frame(index), self.settings, name, "initial")
            self.create_run(SCHEDULED_RETRAIN, {"spec": name, "reason": "schedule"}, f"sim-initial-{name}")
        # Retrains run two at a time (prefect.yaml: slots_per_deployment), each 15 s idle to 3 min under load:
        # give up only when nothing is left running and a champion is still missing.
        idle_since, waiting = None, set(new)
        while waiting:
            waiting = {name for name in waiting if self.champion(name) is None}
            failed = self.count(SCHEDULED_RETRAIN, ("FAILED", "CRASHED"), 0.0) + self.count("promote/on-new-challenger", ("FAILED", "CRASHED"), 0.0)
            if failed:
                raise RuntimeError(f"{failed} initial retrain/promote runs failed or crashed: see {self.home / 'logs'}")
            active = self.count(None, ("SCHEDULED", "PENDING", "RUNNING"), 0.0)
            idle_since = None if active else idle_since or time.monotonic()
            if waiting and idle_since and time.monotonic() - idle_since > 60:
                raise RuntimeError(f"no champion after {time.monotonic() - started:.0f} s and no run left for {sorted(waiting)[:5]}")
            time.sleep(2)  # polling the registry for the alias: no event to wait on from outside
        say(f"  first champions of {len(new)} models: {time.monotonic() - started:.0f} s")

    # --- Prefect ---------------------------------------------------------------------------------------

    def create_run(self, deployment: str, parameters: dict, idempotency_key: str) -> None:
        self.api.post(f"/deployments/{self.deployments[deployment]}/create_flow_run",
                      {"parameters": parameters, "idempotency_key": idempotency_key})

    def count(self, deployment: str | None, states: tuple[str, ...], since: float) -> int:
        flow_runs: dict = {"expected_start_time": {"after_": iso(since)}, "state": {"type": {"any_": list(states)}}}
        if deployment:
            flow_runs["deployment_id"] = {"any_": [self.deployments[deployment]]}
        return int(self.api.post("/flow_runs/count", {"flow_runs": flow_runs}).json())

    # --- a step of the ladder ----------------------------------------------------------------------------

    def calibrate(self, step: Step) -> plan.Compression:
        """K batches landed at once on K models (the step's first simulated hour), timed from the puts to
        the last completed check: the cost of a drift check on this machine now, both workers busy. A batch
        landed again under a key already checked would be dropped as a duplicate, rightly: so never hour 0
        of an earlier step."""
        k = min(step.n_models, 6)
        since = time.time()
        started = time.monotonic()
        list(self.putter.map(lambda i: self.put(step, i, step.first_hour), range(k)))
        deadline = started + 600
        while self.count(DRIFT, measure.TERMINAL, since) < k:
            if time.monotonic() > deadline:
                raise RuntimeError("the calibration checks did not finish in 600 s")
            time.sleep(0.5)  # polling the API: the end of a run elsewhere has no hook here
        return plan.derive_compression(step.n_models, k, time.monotonic() - started, headroom=self.args.headroom)

    def put(self, step: Step, index: int, hour: int) -> None:
        source = plan.batch_source(plan.model_kind(index), hour, self.total_hours)
        frame = world.batch(self.pools, source, index, hour)
        key, _ = world.land(frame, self.settings, self.names[index], f"h{hour:05d}")
        step.landed[key] = time.time()

    def drive(self, step: Step, clock: plan.SimClock) -> None:
        """Batches on the simulated clock, weekly retrains at week boundaries, a backlog watch every few seconds.
        However driving ends, it returns only once every put it started has landed: a put still in flight
        would land after the drain and read as a batch without a check in the report."""
        pending: list = []
        try:
            step.stop_reason = self._land_on_the_clock(step, clock, pending)
        finally:
            for future in pending:
                future.result()

    def _land_on_the_clock(self, step: Step, clock: plan.SimClock, pending: list) -> str:
        """Starts each landing's put when it falls due (into ``pending``); returns why driving ended."""
        boundaries = set(plan.week_boundaries(clock.start, self.total_hours))
        watch = plan.BacklogWatch(step.n_models)
        budget_end = time.monotonic() + self.args.max_minutes * 60
        next_poll = time.monotonic() + POLL_SECONDS
        for landing in plan.landings(step.n_models, self.total_hours, clock.compression, first_hour=step.first_hour + 1):
            due = clock.real_start + landing.real_offset
            if due - time.time() > budget_end - time.monotonic():
                return f"wall-time budget of {self.args.max_minutes:g} min reached before simulated hour {landing.hour}"
            while time.time() < due:
                time.sleep(min(0.2, max(0.0, due - time.time())))  # pacing against the simulated clock
                if time.monotonic() >= next_poll:
                    next_poll = time.monotonic() + POLL_SECONDS
                    verdict = watch.observe(self.outstanding(step))
                    if verdict:
                        step.bottleneck = self.bottleneck(step)
                        return f"backlog at simulated hour {step.hours_reached}: {verdict}"
            if time.monotonic() > budget_end:
                return f"wall-time budget of {self.args.max_minutes:g} min reached at simulated hour {landing.hour}"
            if landing.model_index == 0 and landing.hour in boundaries:
                week = landing.hour // 168
                for name in self.names:
                    self.create_run(SCHEDULED_RETRAIN, {"spec": name, "reason": "schedule"}, f"sim-week-{week}-{landing.hour}-{name}")
                step.weekly_runs += len(self.names)
                say(f"  simulated {clock.simulated_at(time.time()):%a %H:%M}: weekly retrains due for {len(self.names)} models")
            pending.append(self.putter.submit(self.put, step, landing.model_index, landing.hour))
            step.hours_reached = landing.hour
        return f"all {self.total_hours} simulated hours landed"

    def outstanding(self, step: Step) -> int:
        return len(step.landed) - self.count(DRIFT, measure.TERMINAL, step.started)

    def bottleneck(self, step: Step) -> str:
        created = self.count(DRIFT, ("SCHEDULED", "PENDING", "RUNNING", *measure.TERMINAL), step.started)
        busy = self.sampler.machine_busy[-5:] or [0.0]
        return plan.name_bottleneck(
            max(0, len(step.landed) - created), self.count(None, ("SCHEDULED",), step.started),
            self.count(None, ("PENDING",), step.started), self.count(None, ("RUNNING",), step.started), sum(busy) / len(busy),
        )

    def drain(self, step: Step, timeout: float) -> None:
        """Wait for the landed batches' checks and what they triggered (up to ``timeout`` s)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            busy = self.count(None, ("SCHEDULED", "PENDING", "RUNNING"), step.started)
            if self.outstanding(step) <= 0 and busy == 0:
                return
            time.sleep(1)  # polling the API for runs to end
        say(f"  drain: gave up after {timeout:.0f} s ({self.outstanding(step)} checks outstanding)")

    def run_step(self, n_models: int, first_new: int, first_hour: int) -> Step:
        step = Step(n_models, first_hour=first_hour, hours_reached=first_hour)
        self.write_specs(n_models, cooldown_real_minutes=1.0)
        self.register_first_champions(first_new, n_models)
        sizes_before, runs_before = measure.database_sizes(self.settings), len(measure.flow_runs_since(self.api, iso(0)))
        step.started = time.time()
        self.sampler.restart_figures()
        if self.args.compression:
            step.compression = plan.Compression(self.args.compression, 0.0, 0.0, "given with --compression")
        else:
            step.compression = self.calibrate(step)
        self.write_specs(n_models, cooldown_real_minutes=SIM_COOLDOWN_MINUTES / step.compression.value)
        say(f"  compression x{step.compression.value:.0f}: {step.compression.reason}")
        simulated_hours = self.args.max_minutes * 60 * step.compression.value / 3600
        if simulated_hours < 3:
            say(f"  note: --max-minutes {self.args.max_minutes:g} drives {simulated_hours:.1f} simulated hours at this compression; "
                f"a sustained rate needs a few (--max-minutes {math.ceil(3 * 60 / step.compression.value)} for three)")
        say(f"  cooldown {SIM_COOLDOWN_MINUTES:g} simulated min = {SIM_COOLDOWN_MINUTES / step.compression.value:.2f} real min; "
            f"retrain/on-drift window 60 real s = {60 * step.compression.value / 3600:.1f} simulated h")
        # Hour first_hour is now: the calendar goes on from where the last step stopped.
        clock = plan.SimClock(time.time() - step.first_hour * 3600.0 / step.compression.value, step.compression.value)
        self.drive(step, clock)
        say(f"  {step.stop_reason}; draining")
        self.drain(step, timeout=self.args.drain_seconds)
        step.ended = time.time()
        self.report(step, sizes_before, runs_before)
        return step

    # --- the table -----------------------------------------------------------------------------------------

    def report(self, step: Step, sizes_before: dict[str, int], runs_before: int) -> None:
        runs = measure.flow_runs_since(self.api, iso(step.started))
        names = {v: k for k, v in self.deployments.items()}
        real_hours = (step.ended - step.started) / 3600
        states: dict[str, int] = {}
        for run in runs:
            states[run["state_type"]] = states.get(run["state_type"], 0) + 1
        per_deployment: dict[str, int] = {}
        for run in runs:
            name = names.get(run["deployment_id"], "other")
            per_deployment[name] = per_deployment.get(name, 0) + 1
        lags = {r["id"]: measure.parse_time(r["start_time"]) - measure.parse_time(r["expected_start_time"]) for r in runs if r["start_time"]}
        check_lags = [lags[r["id"]] for r in runs if r["id"] in lags and names.get(r["deployment_id"]) == DRIFT]
        events = attempt(lambda: measure.landed_events_since(self.api, iso(step.started - 5), iso(time.time())), {}, self.errors)
        bucket = self.settings.s3_bucket
        put_lag, event_lag = [], []
        for run in runs:
            key = run["parameters"].get("key")
            if names.get(run["deployment_id"]) != DRIFT or key not in step.landed:
                continue
            created = measure.parse_time(run["created"])
            put_lag.append(created - step.landed[key])
            occurred = events.get(f"s3://{bucket}/{key}")
            if occurred is not None:
                event_lag.append(created - occurred)
        checked = {run["parameters"].get("key") for run in runs if names.get(run["deployment_id"]) == DRIFT}
        unchecked = sorted(key for key in step.landed if key not in checked)
        listed_checks = sum(1 for run in runs if names.get(run["deployment_id"]) == DRIFT)
        counted_checks = self.count(DRIFT, ("SCHEDULED", "PENDING", "RUNNING", "PAUSED", *measure.TERMINAL), step.started)
        retrains = attempt(lambda: measure.retrain_outcomes(self.api, [r for r in runs if names.get(r["deployment_id"], "").startswith("retrain/")]), {}, self.errors)
        sizes = measure.database_sizes(self.settings)
        total_runs = len(measure.flow_runs_since(self.api, iso(0)))
        grown = sizes["prefect"] - sizes_before["prefect"]
        per_thousand = grown / max(1, total_runs - runs_before) * 1000 / 1e6
        keys, redis_bytes, redis_server = attempt(lambda: measure.redis_memory(self.settings), (0, 0, 0), self.errors)
        models, versions = attempt(lambda: measure.mlflow_registry(self.settings), (0, 0), self.errors)
        latency = [x for x in self.sampler.api_latency if x != float("inf")]
        failed_calls = len(self.sampler.api_latency) - len(latency)
        per_hour = lambda state: f"{states.get(state, 0) / real_hours:.0f}/h ({states.get(state, 0)})" if real_hours else "-"  # noqa: E731
        span_hours = step.hours_reached - step.first_hour + 1
        rows = [
            ("models", f"{step.n_models} ({', '.join(f'{n} {k}' for k, n in self.kinds(step.n_models).items())})"),
            ("compression", f"x{step.compression.value:.0f}: {step.compression.reason}"),
            ("simulated span", f"hours {step.first_hour}-{step.hours_reached} of {self.total_hours}: {span_hours} h ({span_hours / 24:.2f} days) in {(step.ended - step.started) / 60:.1f} real min"),
            ("ended", step.stop_reason),
            ("batches landed", f"{len(step.landed)}; weekly retrain runs created {step.weekly_runs}"),
            ("landed batches without a check run", f"{len(unchecked)}" + "".join(
                f"; {key} ({'its batch.landed event stored' if f's3://{bucket}/{key}' in events else 'no batch.landed event'})"
                for key in unchecked[:5]) + f" (drift-monitor runs listed {listed_checks}, counted {counted_checks})"),
            ("flow runs by deployment", ", ".join(f"{k} {v}" for k, v in sorted(per_deployment.items()))),
            ("retrain runs ended by what they did", ", ".join(f"{k} {v}" for k, v in sorted(retrains.items())) or "none"),
            ("flow runs per real hour", f"completed {per_hour('COMPLETED')}, failed {per_hour('FAILED')}, crashed {per_hour('CRASHED')}, "
                                        f"cancelled {per_hour('CANCELLED')}, not ended {sum(v for k, v in states.items() if k not in measure.TERMINAL)}"),
            ("flow runs per simulated day", f"{len(runs) / max(1e-9, span_hours / 24):.0f}"),
            ("scheduling lag expected->Running", f"all runs {plan.spread(list(lags.values()))}; drift checks {plan.spread(check_lags)} "
                                                 "(retrains also wait for a slot of their deployment's concurrency limit, prefect.yaml)"),
            ("S3 put -> run created", plan.spread(put_lag)),
            ("batch.landed event -> run created", plan.spread(event_lag)),
            ("Prefect API latency p50/p95/max", f"{plan.spread(latency)}; {failed_calls} failed calls" if latency else "-"),
            ("machine CPU busy (mean)", f"{sum(self.sampler.machine_busy) / max(1, len(self.sampler.machine_busy)):.0%} of 2 cores"),
        ]
        for group, usage in sorted(self.sampler.usage.items()):
            if usage.cpu:
                rows.append((f"  {group}", f"CPU mean {sum(usage.cpu) / len(usage.cpu):.0f}% max {max(usage.cpu):.0f}% of a core, RSS max {max(usage.rss):.0f} MB"))
        rows += [
            ("PostgreSQL prefect DB", f"{sizes['prefect'] / 1e6:.1f} MB; +{grown / 1e6:.1f} MB over {total_runs - runs_before} runs = {per_thousand:.1f} MB per 1,000 flow runs"),
            ("PostgreSQL mlflow DB", f"{sizes['mlflow'] / 1e6:.1f} MB (was {sizes_before['mlflow'] / 1e6:.1f})"),
            ("Redis (our db)", f"{keys} keys, {redis_bytes / 1e6:.1f} MB by MEMORY USAGE; server used_memory {redis_server / 1e6:.0f} MB (shared)"),
            ("MLflow registry", f"{models} registered models, {versions} versions"),
            ("backlog / bottleneck", step.bottleneck),
        ] + [("measurement failed", error) for error in self.errors]
        self.errors.clear()
        say(f"\n== {step.n_models} models  (load {os.getloadavg()[0]:.1f} as the step ends, the simulation's own work included) ==")
        say(plan.table(rows))

    def kinds(self, n_models: int) -> dict[str, int]:
        counts = {kind: 0 for kind in plan.KINDS}
        for index in range(n_models):
            counts[plan.model_kind(index)] += 1
        return counts

    # --- the whole run -----------------------------------------------------------------------------------

    def main(self) -> int:
        ladder = [int(n) for n in self.args.models.split(",")]
        self.total_hours = max(2, round(self.args.days * 24))
        say(f"simulation {self.run_id}: models {ladder}, {self.args.days:g} simulated days ({self.total_hours} hourly batches per model); "
            f"state in {self.home}")
        say(f"uptime: {os.popen('uptime').read().strip()}")  # noqa: S605 - fixed command
        say("clock: " + plan.__doc__.split("How the simulated clock", 1)[1].split('"""')[0].strip().split("\n", 1)[1].replace("\n", "\n       "))
        self.write_specs(ladder[0], cooldown_real_minutes=1.0)
        started = time.monotonic()
        try:
            sim_stack.up(self.settings, self.specs_dir)
            self.deployments = sim_stack.deploy(self.settings)
            say(f"production stack up and deployed: {time.monotonic() - started:.0f} s")
            self.api = Api(self.settings)
            self.pools = world.Pools.load()
            self.sampler = measure.Sampler(self.settings)
            self.sampler.start()
            first_new = first_hour = 0
            for n_models in ladder:
                say(f"\n-- step: {n_models} models --")
                step = self.run_step(n_models, first_new, first_hour)
                first_new, first_hour = n_models, step.hours_reached + 1
                if step.stop_reason.startswith("backlog"):
                    say(f"\nladder stopped at {n_models} models: {step.stop_reason}; bottleneck: {step.bottleneck}")
                    break
            self.sampler.stop()
        finally:
            self.putter.shutdown(wait=False, cancel_futures=True)
            if self.args.keep:
                say(f"stack left running (--keep): python -c 'from sim.stack import down' ... home {self.home}")
            else:
                sim_stack.down(self.settings)
                say("stack stopped; databases and Redis database dropped")
            say(f"uptime: {os.popen('uptime').read().strip()}")  # noqa: S605 - fixed command
        return 0


def attempt(measurement, default, errors: list[str]):
    """One figure of the table that may fail to be taken (the stack refused): the table still prints, and lists
    the failure under "measurement failed" next to the default it then shows."""
    try:
        return measurement()
    except Exception as exc:  # noqa: BLE001 - reported in the table's "measurement failed" rows
        errors.append(f"{type(exc).__name__}: {str(exc)[:200]}")
        return default


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m sim", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="10", help="model counts of the ladder, comma-separated (e.g. 25,50,100)")
    parser.add_argument("--days", type=float, default=1.0, help="simulated days per step")
    parser.add_argument("--compression", type=float, default=None, help="skip the calibration: simulated seconds per real second")
    parser.add_argument("--headroom", type=float, default=2.0, help="share of capacity kept for retrains and promotions")
    parser.add_argument("--max-minutes", type=float, default=10.0, help="wall-time budget of each step's driving phase")
    parser.add_argument("--drain-seconds", type=float, default=180.0)
    parser.add_argument("--home", default=None)
    parser.add_argument("--keep", action="store_true", help="leave the stack running")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(Simulation(parse_args(None)).main())
