"""``leanops retrain | promote | rollback``: start the deployment (default) or run the flow here (``--local``)."""

from __future__ import annotations

import contextlib
import sys
from typing import Any, Callable, Optional

import typer

from leanops_cli.output import JSON_OPTION, answer, attempt, console, fail, plain

# The deployments of prefect.yaml that take a model as a parameter (names: flow/deployment).
RETRAIN_DEPLOYMENT = "retrain/on-schedule"
PROMOTE_DEPLOYMENT = "promote/on-new-challenger"
ROLLBACK_DEPLOYMENT = "rollback/manual"

LOCAL_OPTION = typer.Option(False, "--local", help="Run the flow in this process (still recorded on the Prefect server) instead of on a worker.")


def _known_spec(spec: str, as_json: bool) -> None:
    """A typo in the model name fails here, not minutes later on a worker."""
    from leanops.errors import SpecError
    from leanops.spec import load_spec

    try:
        load_spec(spec)
    except SpecError as exc:
        fail(str(exc), as_json)


def flow_run_url(flow_run_id: Any) -> str:
    from prefect.settings import PREFECT_UI_URL

    base = (PREFECT_UI_URL.value() or "").rstrip("/")
    return f"{base}/runs/flow-run/{flow_run_id}" if base else str(flow_run_id)


def _start(deployment: str, parameters: dict[str, Any], as_json: bool) -> None:
    from prefect.deployments import run_deployment

    try:
        run = run_deployment(deployment, parameters={k: v for k, v in parameters.items() if v is not None}, timeout=0)
    except Exception as exc:  # noqa: BLE001 - any failure to reach the server or find the deployment is the answer
        fail(
            f"could not start {deployment}: {type(exc).__name__}: {exc} "
            "(is the stack up, `make stack-up`, and are the deployments created, `prefect deploy --all`? Or pass --local)",
            as_json,
        )
    result = {"ok": True, "deployment": deployment, "flow_run_id": str(run.id), "flow_run_name": run.name, "url": flow_run_url(run.id),
              "parameters": plain(run.parameters)}
    answer(result, as_json, lambda: console.print(
        f"started [bold]{deployment}[/] as flow run {run.name} ({run.id})\n  {result['url']}", highlight=False, soft_wrap=True,
    ))


def _run_local(flow, parameters: dict[str, Any], describe: Callable[[Any], str], as_json: bool) -> None:
    # Libraries print progress to stdout (MLflow's "View run ..."); with --json, stdout is the document only.
    with contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext():
        state = flow(**{k: v for k, v in parameters.items() if v is not None}, return_state=True)
    run_id = state.state_details.flow_run_id
    if not state.is_completed():
        fail(f"{flow.name} {state.name}: {state.message or ''}".rstrip(": "), as_json, flow_run_id=str(run_id), url=flow_run_url(run_id))
    result = state.result()
    payload = {"ok": True, "flow": flow.name, "state": state.name, "flow_run_id": str(run_id), "url": flow_run_url(run_id), "result": plain(result)}
    answer(payload, as_json, lambda: console.print(f"{flow.name}: {describe(result)}\n  {payload['url']}", highlight=False, soft_wrap=True))


def retrain(
    model: str = typer.Argument(..., help="The model: a spec name in the specs folder."),
    data: Optional[str] = typer.Option(None, "--data", help="Train on this object or prefix (s3://... or a path); default: the spec's window of landed batches."),
    tune: Optional[bool] = typer.Option(None, "--tune/--no-tune", help="Run the Optuna study first (default: the spec's tuning.enabled)."),
    local: bool = LOCAL_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Train a challenger for MODEL and register it in MLflow (a registered challenger then goes to
    **promote** by itself, through its trigger). Starts the retrain/on-schedule deployment on a worker.

    Example:

        leanops retrain churn --data s3://leanops/incoming/churn/
    """
    _known_spec(model, as_json)
    parameters = {"spec": model, "batch_uri": data, "reason": "manual", "tune": tune}
    if not local:
        return _start(RETRAIN_DEPLOYMENT, parameters, as_json)
    from flows.retrain import retrain as retrain_flow

    def describe(result) -> str:
        if result is None:
            return "skipped (see the run's log)"
        created = "registered" if result.created else "already registered (same data, spec and code)"
        return f"{result.model_name} v{result.version} {created} as {result.alias}"

    _run_local(retrain_flow, parameters, describe, as_json)


def promote(
    model: str = typer.Argument(..., help="The model: a spec name in the specs folder."),
    version: Optional[str] = typer.Option(None, "--version", help="Version number or alias to judge (default: the challenger)."),
    approval: Optional[str] = typer.Option(None, "--approval", help="auto or manual (a person answers in the Prefect UI); default: the spec's."),
    data: Optional[str] = typer.Option(None, "--data", help="Also compare champion and challenger on this labelled batch."),
    ask_again: bool = typer.Option(
        False, "--ask-again", help="Ask a person even if one answered this comparison before (implies --approval manual)."
    ),
    local: bool = LOCAL_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Judge a version of MODEL against its champion with the spec's gates, and make it champion if it passes
    (with **--approval manual**, after a person approves it in the Prefect UI).

    Example:

        leanops promote churn --version 3 --approval manual

        leanops promote churn --version 3 --approval manual --ask-again
    """
    if approval not in (None, "auto", "manual"):
        fail(f"--approval {approval!r}: use auto or manual", as_json)
    _known_spec(model, as_json)
    parameters = {"spec": model, "version": version, "approval": approval, "batch_uri": data, "ask_again": ask_again}
    if not local:
        return _start(PROMOTE_DEPLOYMENT, parameters, as_json)
    from flows.promote import promote as promote_flow

    _run_local(promote_flow, parameters, _describe_change, as_json)


def rollback(
    model: str = typer.Argument(..., help="The model: a spec name in the specs folder."),
    reason: str = typer.Option(..., "--reason", help="Why (kept in the audit trail and the Slack message)."),
    to_version: Optional[str] = typer.Option(None, "--to-version", help="Version to make champion (default: previous-champion)."),
    local: bool = LOCAL_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Move MODEL's champion back to its previous champion (or --to-version), with an audit-trail entry,
    an event and a Slack message.

    Example:

        leanops rollback churn --reason "complaints since Monday's release"
    """
    _known_spec(model, as_json)
    parameters = {"spec": model, "reason": reason, "to_version": to_version}
    if not local:
        return _start(ROLLBACK_DEPLOYMENT, parameters, as_json)
    from flows.rollback import rollback as rollback_flow

    _run_local(rollback_flow, parameters, _describe_change, as_json)


def land(
    model: str = typer.Argument(..., help="The model: a spec name in the specs folder."),
    data: str = typer.Argument(..., help="The batch: a .csv or .parquet file (or URI)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Land a batch for MODEL: write it as parquet under the bucket's incoming/MODEL/ prefix, as a data
    pipeline would. The bucket's notification starts its drift check against the champion (drift then
    starts a retrain, and a new challenger its promotion); a retrain reads the latest landed batches.

    Example:

        leanops land churn churn-2024-06.csv
    """
    from pathlib import PurePosixPath

    from leanops import storage
    from leanops.settings import get_settings

    _known_spec(model, as_json)
    settings = get_settings()
    stem = PurePosixPath(data.split("?", 1)[0]).name.split(".", 1)[0]
    uri = f"s3://{settings.s3_bucket}/{settings.s3_incoming_prefix}{model}/{stem}.parquet"
    frame = attempt(lambda: storage.read_table(data)[0], as_json)
    attempt(lambda: storage.write_table(frame, uri), as_json)
    answer({"ok": True, "model": model, "uri": uri, "rows": len(frame)}, as_json, lambda: console.print(
        f"landed {len(frame):,} rows at {uri}: its drift check starts when the bucket's notification arrives", highlight=False,
    ))


def _describe_change(change) -> str:
    return f"{change.action}: {change.model_name} v{change.version} ({change.reason})" if change.reason else f"{change.action}: {change.model_name} v{change.version}"
