"""Is every service leanops is configured for there and set up? What ``leanops doctor`` answers.

One :class:`Check` per thing that can be wrong, each saying in plain words what was found and, when it is
wrong, what to do: the Prefect API and its database, the work pool and its live workers, MLflow, the S3
bucket, the SQS queue with its dead-letter queue, the bucket's notification to that queue, Slack, the fork
server, and every spec of the specs folder. Each check goes through the library's adapter for its system
with a short timeout, and the groups run side by side under one deadline: a service that does not answer
is a failed check saying so, never a hang. The decisions (what counts as a live worker, a dead-letter
queue in place, a notification that reaches the queue) are plain functions, tested alone.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, Sequence

from leanops.errors import LeanopsError, ObjectNotFound, RegistryUnavailable, TransientIOError
from leanops.settings import Settings, get_settings

if TYPE_CHECKING:
    from leanops.storage import NotificationRule

Status = Literal["ok", "warn", "fail", "skip"]

START_STACK = "start what is down: make stack-up (python -m infra.stack up; make stack-status lists each service)"
# Prefect's own rule (its foreman service): a worker that missed this many heartbeats is offline.
MISSED_HEARTBEATS = 3
DEFAULT_HEARTBEAT_SECONDS = 30.0


@dataclass(frozen=True)
class Check:
    service: str
    """What was checked, e.g. "Prefect API", "S3 bucket", "spec flights-delay"."""
    status: Status
    said: str
    """What was found, in plain words."""
    fix: str = ""
    """What to do about it (a warning or a failure)."""


@dataclass(frozen=True)
class Diagnosis:
    checks: tuple[Check, ...]

    @property
    def failed(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.status == "fail")

    @property
    def ok(self) -> bool:
        return not self.failed


def ok(service: str, said: str) -> Check:
    return Check(service, "ok", said)


def fail(service: str, said: str, fix: str) -> Check:
    return Check(service, "fail", said, fix)


def skip(service: str, because: str) -> Check:
    return Check(service, "skip", f"not checked: {because}")


def plain_reason(exc: BaseException) -> str:
    """Why a call failed, short: "connection refused" rather than a library's nested repr."""
    text = " ".join(str(e) for e in _chain(exc))
    for pattern, said in ((r"Connection refused", "connection refused"), (r"timed? ?out|Timeout", "no answer in time"),
                          (r"Name or service not known|nodename nor servname", "unknown host")):
        if re.search(pattern, text, flags=re.IGNORECASE):
            return said
    return f"{type(exc).__name__}: {exc}"[:300]


def _chain(exc: BaseException | None) -> list[BaseException]:
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


# --- decisions -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerBeat:
    name: str
    last_heartbeat: datetime | None
    heartbeat_seconds: float | None


def judge_workers(pool: str, workers: Sequence[WorkerBeat], now: datetime) -> Check:
    """Live: a heartbeat within MISSED_HEARTBEATS of its worker's own interval (Prefect's rule for ONLINE)."""
    service = f"workers of {pool}"

    def age(worker: WorkerBeat) -> float | None:
        return None if worker.last_heartbeat is None else (now - worker.last_heartbeat).total_seconds()

    live = [w for w in workers if age(w) is not None and age(w) <= MISSED_HEARTBEATS * (w.heartbeat_seconds or DEFAULT_HEARTBEAT_SECONDS)]
    if live:
        return ok(service, f"{len(live)} live: " + ", ".join(f"{w.name} (heartbeat {age(w):.0f} s ago)" for w in live))
    fix = f"start a worker: {START_STACK.split(': ', 1)[1]}, or prefect worker start --pool {pool}"
    if not workers:
        return fail(service, "no worker has ever polled it: nothing runs the deployments", fix)
    latest = max((w for w in workers if w.last_heartbeat), key=lambda w: w.last_heartbeat, default=None)
    last = f"last heartbeat {latest.name}, {age(latest):.0f} s ago" if latest else "no heartbeat ever"
    return fail(service, f"no live worker ({last}): nothing runs the deployments", fix)


def judge_redrive(queue: str, redrive_target_arn: str | None, max_receive_count: int | None, dead_letter: str, dead_letter_arn: str) -> Check:
    service = f"SQS queue {queue}"
    fix = f"give it a redrive policy to {dead_letter}: python -m infra.stack up sets it (or infra/terraform on AWS)"
    if redrive_target_arn is None:
        return fail(service, "no dead-letter queue: a notification the bridge cannot handle would come back forever", fix)
    if redrive_target_arn != dead_letter_arn:
        return fail(service, f"its dead letters go to {redrive_target_arn}, not to {dead_letter} ({dead_letter_arn})", fix)
    return ok(service, f"answers; a message failing {max_receive_count} receives moves to {dead_letter}")


def judge_dead_letters(queue: str, waiting: int) -> Check:
    service = f"dead-letter queue {queue}"
    if waiting:
        return Check(service, "warn", f"{waiting} message(s) wait in it: batches that were never checked",
                     "see why: leanops dlq list; then leanops dlq redrive --all (or drop)")
    return ok(service, "answers, empty")


def judge_notifications(bucket: str, rules: Sequence[NotificationRule], queue: str, queue_arn: str, prefix: str, suffix: str) -> Check:
    """Objects created under ``prefix`` ending in ``suffix`` must notify the bridge's queue."""
    service = f"notification s3://{bucket}/{prefix}*{suffix}"
    fix = f"point the bucket's ObjectCreated notifications for {prefix}*{suffix} at {queue}: python -m infra.stack up does it (or infra/terraform)"

    def covers(rule: NotificationRule) -> bool:
        created = any(e in ("s3:ObjectCreated:*", "s3:ObjectCreated:Put") for e in rule.events)
        return created and prefix.startswith(rule.prefix) and (not rule.suffix or suffix.endswith(rule.suffix))

    reaching = [r for r in rules if covers(r)]
    if any(r.queue_arn == queue_arn for r in reaching):
        return ok(service, f"new objects notify {queue}")
    if reaching:
        return fail(service, f"new objects notify {', '.join(sorted({r.queue_arn for r in reaching}))}, not {queue}: the bridge never hears of them", fix)
    return fail(service, "new objects notify no queue: no batch landing there is ever checked", fix)


# --- checks, one group per system --------------------------------------------------------------------------


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def check_prefect(settings: Settings, timeout: float) -> list[Check]:
    from leanops import prefect_api

    checks: list[Check] = []
    reachable = []
    for api in settings.prefect_api_urls:
        name = "Prefect API" if len(settings.prefect_api_urls) == 1 else f"Prefect API {api}"
        try:
            health = prefect_api.call(settings, "GET", "health", api_url=api, timeout=timeout)
            ready = prefect_api.call(settings, "GET", "ready", api_url=api, timeout=timeout)
            version = prefect_api.call(settings, "GET", "admin/version", api_url=api, timeout=timeout)
        except TransientIOError as exc:
            checks += [fail(name, f"unreachable at {api} ({plain_reason(exc)})",
                            f"{START_STACK}; or set LEANOPS_PREFECT_API_URL to your server"),
                       skip(f"{name}: database", "the API is unreachable")]
            continue
        if version.status in (401, 403):
            checks.append(fail(name, f"answers at {api} but refuses our credentials ({version.status})",
                               "set LEANOPS_PREFECT_AUTH_STRING to the server's user:password (PREFECT_SERVER_API_AUTH_STRING)"))
        elif not health.ok:
            checks.append(fail(name, f"answers at {api} with {health.status} on /health", "see the server's log: .leanops/logs/prefect-*.log"))
        else:
            checks.append(ok(name, f"answers at {api} (Prefect {version.body if version.ok else '?'})"))
            reachable.append(api)
        if ready.ok:
            checks.append(ok(f"{name}: database", "the server reaches its database"))
        else:
            checks.append(fail(f"{name}: database", f"the server cannot use its database ({ready.status}: {_message(ready.body)})",
                               "check the database the server uses (PREFECT_API_DATABASE_CONNECTION_URL; LEANOPS_POSTGRES_URL in "
                               "production) and the server's log in .leanops/logs/"))
    pool = settings.work_pool_name
    if not reachable:
        return checks + [skip(f"work pool {pool}", "no Prefect API answers"), skip(f"workers of {pool}", "no Prefect API answers")]
    return checks + _check_pool(settings, reachable[0], timeout)


def _message(body: Any) -> str:
    return str(body.get("message") or body.get("detail") or body) if isinstance(body, dict) else str(body)[:200]


def _check_pool(settings: Settings, api: str, timeout: float) -> list[Check]:
    from leanops import prefect_api

    pool = settings.work_pool_name
    found = prefect_api.call(settings, "GET", f"work_pools/{pool}", api_url=api, timeout=timeout)
    if found.status == 404:
        return [fail(f"work pool {pool}", "does not exist: no deployment can run",
                     f"python -m infra.stack up creates it, or: prefect work-pool create {pool} --type process"),
                skip(f"workers of {pool}", "the pool does not exist")]
    if not found.ok:
        return [fail(f"work pool {pool}", f"cannot be read ({found.status}: {_message(found.body)})", "see the Prefect server's log"),
                skip(f"workers of {pool}", "the pool cannot be read")]
    if found.body.get("is_paused"):
        pool_check = fail(f"work pool {pool}", "is paused: its runs wait and nothing starts them", f"prefect work-pool resume {pool}")
    else:
        pool_check = ok(f"work pool {pool}", f"{found.body.get('type', '?')} pool, not paused")
    listed = prefect_api.call(settings, "POST", f"work_pools/{pool}/workers/filter", {"limit": 200}, api_url=api, timeout=timeout)
    if not listed.ok:
        return [pool_check, fail(f"workers of {pool}", f"cannot be listed ({listed.status})", "see the Prefect server's log")]
    beats = [WorkerBeat(w["name"], _parse_time(w.get("last_heartbeat_time")), w.get("heartbeat_interval_seconds")) for w in listed.body]
    return [pool_check, judge_workers(pool, beats, datetime.now(timezone.utc))]


def check_mlflow(settings: Settings, timeout: float) -> list[Check]:
    from leanops import mlflow_access

    uri = settings.resolved_mlflow_tracking_uri
    try:
        mlflow_access.check_server(settings, timeout)
    except PermissionError:
        return [fail("MLflow", f"answers at {uri} but refuses our credentials",
                     "set LEANOPS_MLFLOW_USERNAME and LEANOPS_MLFLOW_PASSWORD to an account of its basic-auth app")]
    except RegistryUnavailable as exc:
        return [fail("MLflow", f"unreachable at {uri} ({plain_reason(exc)})", f"{START_STACK}; or set LEANOPS_MLFLOW_TRACKING_URI to your server")]
    except Exception as exc:  # noqa: BLE001 - any other failure to read is this check's answer, said in its line
        return [fail("MLflow", f"cannot be read at {uri} ({plain_reason(exc)})", "see the MLflow server's log (.leanops/logs/mlflow-server.log)")]
    auth = " with our credentials" if settings.mlflow_password else ""
    return [ok("MLflow", f"answers at {uri}{auth}")]


def check_object_store(settings: Settings, timeout: float) -> list[Check]:
    from leanops import storage

    bucket, queue, dead = settings.s3_bucket, settings.sqs_queue_name, settings.sqs_dead_letter_queue_name
    endpoint = settings.resolved_s3_endpoint_url or "AWS"
    queue_name, dead_name = f"SQS queue {queue}", f"dead-letter queue {dead}"
    notification = f"notification s3://{bucket}/{settings.s3_incoming_prefix}*{settings.s3_incoming_suffix}"
    unreachable_fix = f"{START_STACK}; or set LEANOPS_S3_ENDPOINT_URL (unset for AWS) and the AWS credentials"
    checks: list[Check] = []
    try:
        storage.check_bucket(bucket, settings, timeout)
        checks.append(ok("S3 bucket", f"s3://{bucket} answers at {endpoint}"))
        bucket_ok = True
    except TransientIOError as exc:
        checks.append(fail("S3 bucket", f"the object store at {endpoint} is unreachable ({plain_reason(exc)})", unreachable_fix))
        bucket_ok = False
    except ObjectNotFound:
        checks.append(fail("S3 bucket", f"no bucket s3://{bucket} at {endpoint}", "python -m infra.stack up creates it (or infra/terraform on AWS)"))
        bucket_ok = False
    except LeanopsError as exc:
        checks.append(fail("S3 bucket", f"s3://{bucket} refuses us ({exc})", "check the AWS credentials and the bucket policy (infra/terraform/iam.tf)"))
        bucket_ok = False
    setups = {}
    for name, label in ((queue, queue_name), (dead, dead_name)):
        try:
            setups[name] = storage.queue_setup(name, settings, timeout)
        except TransientIOError as exc:
            checks.append(fail(label, f"SQS at {endpoint} is unreachable ({plain_reason(exc)})", unreachable_fix))
        except ObjectNotFound:
            checks.append(fail(label, "does not exist", "python -m infra.stack up creates it (or infra/terraform on AWS)"))
        except LeanopsError as exc:
            checks.append(fail(label, f"refuses us ({exc})", "check the AWS credentials and the queue policy"))
    if queue in setups and dead in setups:
        main, dead_letter = setups[queue], setups[dead]
        checks += [judge_redrive(queue, main.redrive_target_arn, main.max_receive_count, dead, dead_letter.arn),
                   judge_dead_letters(dead, dead_letter.visible_messages)]
    elif queue in setups or dead in setups:
        checks.append(skip(queue_name if queue in setups else dead_name, "its partner queue cannot be read"))
    if not bucket_ok or queue not in setups:
        return checks + [skip(notification, "the bucket or the queue cannot be read")]
    try:
        rules = storage.bucket_notification_rules(bucket, settings, timeout)
    except (TransientIOError, LeanopsError) as exc:
        return checks + [fail(notification, f"cannot be read ({plain_reason(exc)})", "check the AWS credentials (s3:GetBucketNotification)")]
    return checks + [judge_notifications(bucket, rules, queue, setups[queue].arn, settings.s3_incoming_prefix, settings.s3_incoming_suffix)]


def check_slack(settings: Settings, timeout: float) -> list[Check]:
    from leanops.notify import Notifier

    if not settings.slack_token:
        return [Check("Slack", "warn", "no token configured: alerts are logged, not sent", "set LEANOPS_SLACK_TOKEN and LEANOPS_SLACK_CHANNEL")]
    accepted, said = Notifier(settings, max_retries=0, timeout_seconds=timeout).check_token()
    if accepted:
        return [ok("Slack", said)]
    return [fail("Slack", said, "put a valid bot token in LEANOPS_SLACK_TOKEN (docs/runbook.md: an expired Slack token), then leanops slack-check")]


def check_fork_server(settings: Settings, timeout: float) -> list[Check]:
    # The fork server's wire protocol lives with it (standard library only): its client's probe.
    from deployments.engine_command import probe

    socket_path = settings.resolved_fork_server_socket
    fix = f"{START_STACK}; on a worker machine: python -m deployments.forkserver --socket {socket_path}"
    if not Path(socket_path).exists():
        return [fail("fork server", f"no socket at {socket_path}: flow runs start cold (4-10 s slower each)", fix)]
    try:
        pid = probe(str(socket_path), timeout)
    except OSError as exc:
        return [fail("fork server", f"unreachable at {socket_path} ({plain_reason(exc)}): flow runs start cold", fix)]
    return [ok("fork server", f"answers at {socket_path} (pid {pid})")]


def check_specs(settings: Settings) -> list[Check]:
    from leanops import speccheck

    folder = settings.specs_dir
    if not folder.is_dir():
        return [fail("specs", f"no specs folder at {folder}", "set LEANOPS_SPECS_DIR, or run from the project folder")]
    paths = sorted(folder.glob("*.yaml"))
    if not paths:
        return [Check("specs", "warn", f"no spec in {folder}: no model is trained or monitored", "leanops spec init NAME --data FILE --target COLUMN")]
    checks = []
    for path in paths:
        report = speccheck.check_spec(str(path))
        if report.ok:
            checks.append(ok(f"spec {path.stem}", "loads and is consistent"))
        else:
            checks.append(fail(f"spec {path.stem}", _one_line(report.problems), f"fix {path} (leanops spec check {path} lists every problem)"))
    return checks


def _one_line(problems: Sequence[str], limit: int = 400) -> str:
    """Problems on one line (pydantic's span several, with links): the whole text is `leanops spec check`'s."""
    lines = [line.strip() for problem in problems for line in problem.splitlines()]
    text = " ".join(line for line in lines if line and not line.startswith("For further information"))
    return text if len(text) <= limit else text[: limit - 3] + "..."


GROUPS: tuple[tuple[str, Callable[[Settings, float], list[Check]]], ...] = (
    ("Prefect", check_prefect),
    ("MLflow", check_mlflow),
    ("S3 and SQS", check_object_store),
    ("Slack", check_slack),
    ("fork server", check_fork_server),
    ("specs", lambda settings, _timeout: check_specs(settings)),
)


def diagnose(settings: Settings | None = None, timeout: float = 5.0) -> Diagnosis:
    """Every check, the groups side by side; a group still running after a few timeouts is a failed check."""
    settings = settings or get_settings()
    results: dict[str, list[Check]] = {}

    def run(label: str, group: Callable[[Settings, float], list[Check]]) -> None:
        try:
            results[label] = group(settings, timeout)
        except Exception as exc:  # noqa: BLE001 - a check that breaks is a failed check, the others still report
            results[label] = [fail(label, f"the check itself failed: {type(exc).__name__}: {exc}", "run again with LEANOPS_DEBUG=1 and report it")]

    # Daemon threads: one stuck in a call that ignores its timeout must not keep the process alive.
    threads = [threading.Thread(target=run, args=group, daemon=True, name=f"doctor-{group[0]}") for group in GROUPS]
    for thread in threads:
        thread.start()
    # Imports (MLflow's take seconds) plus a few calls of `timeout` each.
    deadline = time.monotonic() + 30 + 4 * timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    checks: list[Check] = []
    for label, _group in GROUPS:
        checks += results.get(label) or [fail(label, f"no answer within {30 + 4 * timeout:.0f} s", "check that service by hand: it hangs")]
    return Diagnosis(tuple(checks))
