"""The ``leanops`` command and its sub-commands (``leanops --help``)."""

from __future__ import annotations

import os

import typer

from leanops_cli import model_commands, ops_commands, prediction_commands, run_commands, spec_commands

app = typer.Typer(
    name="leanops",
    help="Train, check, promote, roll back and retire the models described by specs/*.yaml.\n\n"
    "Example: leanops spec init churn --data churn.csv --target churn",
    no_args_is_help=True,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _connect() -> None:
    """Point Prefect's client at the server leanops is configured for (LEANOPS_PREFECT_API_URL, default: the
    local stack) unless PREFECT_API_URL says otherwise: a fresh shell then reaches the running stack
    instead of starting a throwaway in-memory Prefect server. Runs before any command imports Prefect.
    The production profile's basic-auth string and shared result storage go along the same way."""
    from leanops.settings import get_settings

    settings = get_settings()
    if not os.environ.get("PREFECT_API_URL"):
        os.environ["PREFECT_API_URL"] = settings.resolved_prefect_api_url
    if settings.is_production:
        for name, value in settings.prefect_client_env().items():
            os.environ.setdefault(name, value)


app.add_typer(spec_commands.app, name="spec")
app.add_typer(ops_commands.dlq, name="dlq")
app.add_typer(ops_commands.cache, name="cache")
app.add_typer(ops_commands.drift, name="drift")
app.add_typer(prediction_commands.app, name="predictions")
for command in (
    run_commands.retrain, run_commands.promote, run_commands.rollback, run_commands.land,
    model_commands.status, model_commands.history, model_commands.retire, model_commands.reinstate,
    ops_commands.recheck, ops_commands.mark_crashed, ops_commands.slack_check, ops_commands.doctor,
):
    app.command()(command)


@app.command()
def serve(
    port: int = typer.Option(None, help="Port (default: LEANOPS_SERVING_PORT, 5070)."),
    workers: int = typer.Option(None, help="uvicorn worker processes (default: LEANOPS_SERVING_WORKERS, 1)."),
    host: str = typer.Option(None, help="Interface (default: LEANOPS_HOST)."),
) -> None:
    """Serve the champion of every model in the specs folder over HTTP, following promotions and rollbacks.

    POST /models/{name}/predict (one JSON row or an array of rows), GET /health, /ready, /metrics."""
    from serving.server import run

    run(host=host, port=port, workers=workers)


def main() -> None:
    try:
        app()
    except Exception as exc:  # noqa: BLE001 - an unreachable service, a bug: one line to the user, not a traceback
        from leanops_cli.output import errors

        errors.print(f"[bold red]error:[/] {type(exc).__name__}: {exc}", highlight=False, soft_wrap=True)
        if os.environ.get("LEANOPS_DEBUG"):
            raise
        raise SystemExit(1) from exc
