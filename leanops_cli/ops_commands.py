"""Diagnosis and recovery commands of docs/runbook.md: ``leanops doctor``, ``leanops recheck``,
``leanops dlq list | redrive | drop``, ``leanops mark-crashed``, ``leanops slack-check``, ``leanops cache prune``
and ``leanops drift prune``."""

from __future__ import annotations

from typing import List, Optional

import typer

from leanops_cli.output import JSON_OPTION, answer, attempt, console, fail, table
from leanops_cli.run_commands import LOCAL_OPTION, _run_local, _start, flow_run_url

DRIFT_DEPLOYMENT = "drift-monitor/on-new-batch"


def recheck(
    batch: str = typer.Argument(..., help="The batch: s3://bucket/incoming/MODEL/file.parquet (or a path with --model)."),
    model: Optional[str] = typer.Option(None, "--model", help="The model (default: the one its incoming/MODEL/ key names)."),
    local: bool = LOCAL_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Check one landed batch again against the champion, as its notification would have: after an outage
    failed its check, a fix of its spec or contract, or to see a verdict again. Its processed mark and
    drift history get the new outcome. Starts the drift-monitor/on-new-batch deployment on a worker.

    Example:

        leanops recheck s3://leanops/incoming/churn/2024-06.parquet --local
    """
    parameters = {"batch_uri": batch, "spec": model}
    if not local:
        return _start(DRIFT_DEPLOYMENT, parameters, as_json)
    from flows.drift_monitor import drift_monitor

    _run_local(drift_monitor, parameters, lambda o: f"{o.batch_uri}: {o.status} (champion v{o.champion_version or '-'})", as_json)


dlq = typer.Typer(
    name="dlq", no_args_is_help=True, rich_markup_mode="markdown",
    help="The S3 bridge's dead-letter queue: notifications it could not turn into events.\n\n"
    "Example: leanops dlq list, then leanops dlq redrive --all",
)


@dlq.command("list")
def dlq_list(as_json: bool = JSON_OPTION) -> None:
    """Every message in the dead-letter queue, with why it is there and the objects it announces (left in place)."""
    from leanops import deadletter

    letters = attempt(deadletter.list_dead_letters, as_json)
    answer(letters, as_json, lambda: console.print(table(
        f"{len(letters)} message(s) in the dead-letter queue", ["message id", "objects", "why"],
        [[d.message_id, "\n".join(d.objects) or "(not a readable notification)", d.reason] for d in letters],
    )))


@dlq.command("redrive")
def dlq_redrive(
    message_ids: Optional[List[str]] = typer.Argument(None, help="Message ids (from dlq list)."),
    all_messages: bool = typer.Option(False, "--all", help="Every message in the queue."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Send messages back to the bridge's queue (after fixing what put them here): each becomes a
    leanops.batch.landed event again, and its batch is checked.

    Example:

        leanops dlq redrive --all
    """
    from leanops import deadletter

    if not message_ids and not all_messages:
        fail("name the message ids to redrive (leanops dlq list), or pass --all", as_json)
    moved = attempt(lambda: deadletter.redrive(None if all_messages else set(message_ids)), as_json)
    _done("sent back to the bridge's queue", moved, message_ids, as_json)


@dlq.command("drop")
def dlq_drop(
    message_ids: List[str] = typer.Argument(..., help="Message ids (from dlq list)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Delete messages from the dead-letter queue for good (nothing will check what they announce)."""
    from leanops import deadletter

    dropped = attempt(lambda: deadletter.drop(set(message_ids)), as_json)
    _done("deleted", dropped, message_ids, as_json)


def _done(what: str, letters, asked: list[str] | None, as_json: bool) -> None:
    missing = sorted(set(asked or ()) - {d.message_id for d in letters})
    payload = {"ok": not missing, "messages": letters, "not_found": missing}
    answer(payload, as_json, lambda: console.print(
        f"{len(letters)} message(s) {what}" + "".join(f"\n  {d.message_id}: {', '.join(d.objects) or '-'}" for d in letters)
        + (f"\nnot in the queue: {', '.join(missing)}" if missing else ""),
        highlight=False, soft_wrap=True,
    ))
    if missing:
        raise typer.Exit(1)


def mark_crashed(
    flow_run_id: str = typer.Argument(..., help="The flow run's id (from the Prefect UI or `prefect flow-run ls`)."),
    reason: str = typer.Option("its process died", "--reason", help="Why (shown as the state's message)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Mark a run Crashed whose process is gone but which the server still shows Running (or Pending,
    Cancelling): its deployment's concurrency slot is freed and the reconciliation sees its batch as not
    in flight. Refuses a run that already finished.

    Example:

        leanops mark-crashed 0e5f4c1a-... --reason "worker host rebooted"
    """
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.states import Crashed

    with get_client(sync_client=True) as client:
        try:
            run = client.read_flow_run(flow_run_id)
        except ObjectNotFound:
            fail(f"no flow run {flow_run_id}", as_json)
        if run.state is None or run.state.is_final():
            fail(f"flow run {run.name} is {run.state_name or 'without a state'}: it finished, nothing to mark", as_json)
        before = run.state_name
        client.set_flow_run_state(run.id, Crashed(message=f"marked Crashed by hand: {reason}"), force=True)
    payload = {"ok": True, "flow_run_id": str(run.id), "flow_run_name": run.name, "was": before, "url": flow_run_url(run.id)}
    answer(payload, as_json, lambda: console.print(
        f"flow run {run.name} ({run.id}): {before} -> Crashed\n  {payload['url']}", highlight=False, soft_wrap=True,
    ))


def slack_check(as_json: bool = JSON_OPTION) -> None:
    """Ask Slack whether it accepts the configured token (LEANOPS_SLACK_TOKEN, from the environment or .env),
    without posting anything. Exits 1 if it does not (e.g. token_expired, invalid_auth).

    Example:

        leanops slack-check
    """
    from leanops.notify import Notifier

    ok, said = Notifier().check_token()
    if not ok:
        fail(said, as_json)
    answer({"ok": True, "said": said}, as_json, lambda: console.print(said, highlight=False))


_MARKS = {"ok": "[green]ok  [/]", "warn": "[yellow]warn[/]", "fail": "[bold red]FAIL[/]", "skip": "[dim]skip[/]"}


def doctor(
    timeout: float = typer.Option(5.0, "--timeout", help="Seconds each service has to answer one request."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Check every service leanops is configured for, one line each with the fix when something is wrong:
    the Prefect API and its database, the work pool and its live workers, MLflow, the S3 bucket, the SQS
    queue with its dead-letter queue and the bucket's notification to it, Slack, the fork server, and
    every spec in the specs folder. Exits 1 when a check fails (a warning alone exits 0). The first step
    of diagnosis (docs/runbook.md).

    Example:

        leanops doctor
    """
    from leanops import doctor as checkup

    diagnosis = checkup.diagnose(timeout=timeout)

    def show() -> None:
        width = max(len(c.service) for c in diagnosis.checks)
        for check in diagnosis.checks:
            fix = f"\n       [bold]fix:[/] {check.fix}" if check.fix else ""
            console.print(f"{_MARKS[check.status]} {check.service:<{width}}  {check.said}{fix}", highlight=False, soft_wrap=True)
        failed = len(diagnosis.failed)
        console.print(f"\n{failed} check(s) failed" if failed else "\nevery check passed", highlight=False)

    answer({"ok": diagnosis.ok, "checks": diagnosis.checks}, as_json, show)
    raise typer.Exit(0 if diagnosis.ok else 1)


cache = typer.Typer(
    name="cache", no_args_is_help=True, rich_markup_mode="markdown",
    help="This machine's copies of registered versions' artifacts (<home>/cache/mlflow-artifacts/).\n\n"
    "Example: leanops cache prune --dry-run",
)


@cache.command("prune")
def cache_prune(
    max_mb: Optional[float] = typer.Option(None, "--max-mb", min=0, help="Total size to keep under (default: LEANOPS_ARTIFACT_CACHE_MAX_MB)."),
    keep_days: Optional[float] = typer.Option(None, "--keep-days", min=0, help="Remove what was unused this long (default: LEANOPS_ARTIFACT_CACHE_KEEP_DAYS)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would be removed; remove nothing."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Remove cached artifacts unused for --keep-days, then the least recently used while the total is over
    --max-mb; what was used in the last 10 minutes stays. Every download prunes by the settings already:
    run this to free space at once, e.g. after lowering the limits. A removed copy is fetched again from
    MLflow when next needed.

    Example:

        leanops cache prune --max-mb 2000
    """
    from leanops import registry

    result = attempt(lambda: registry.prune_artifact_cache(max_mb, keep_days, dry_run), as_json)
    verb = "would remove" if dry_run else "removed"
    answer(result, as_json, lambda: console.print(
        f"{verb} {len(result.removed)} cached artifact(s), {result.freed_bytes / 1e6:.1f} MB, from {result.root}; "
        f"{result.kept} kept ({result.kept_bytes / 1e6:.1f} MB)", highlight=False))


drift = typer.Typer(
    name="drift", no_args_is_help=True, rich_markup_mode="markdown",
    help="The drift checks' record in MLflow: one run per check, with its Evidently report.\n\n"
    "Example: leanops drift prune --dry-run",
)


@drift.command("prune")
def drift_prune(
    older_than_days: Optional[float] = typer.Option(
        None, "--older-than-days", min=0, help="Delete checks started longer ago than this (default: LEANOPS_DRIFT_REPORT_RETENTION_DAYS)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would be deleted; delete nothing."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Delete every model's drift-check runs older than the retention window: their reports (artifacts)
    and the runs. The drift decisions, cooldowns and the drift history table do not read them. A check
    still RUNNING from the last day is kept. MLflow only marks runs deleted: `mlflow gc` on its database
    then removes their rows. Run it daily (cron, or a schedule).

    Example:

        leanops drift prune --older-than-days 90
    """
    from leanops import drift_log

    result = attempt(lambda: drift_log.prune_reports(older_than_days, dry_run), as_json)
    verb = "would delete" if dry_run else "deleted"
    answer(result, as_json, lambda: console.print(
        f"{verb} {len(result.deleted)} drift check(s) started before {result.cutoff}"
        + (f"; {result.kept_in_flight} still running kept" if result.kept_in_flight else ""), highlight=False))
