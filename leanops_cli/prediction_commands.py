"""``leanops predictions prune``: the prediction log holds customer data, kept only as long as the
retention setting says (LEANOPS_PREDICTION_LOG_RETENTION_DAYS)."""

from __future__ import annotations

from typing import Optional

import typer

from leanops_cli.output import JSON_OPTION, answer, attempt, console

app = typer.Typer(
    name="predictions", no_args_is_help=True, rich_markup_mode="markdown",
    help="The endpoints' prediction log (customer data: request rows and answers).\n\nExample: leanops predictions prune --dry-run",
)


@app.command("prune")
def prune(
    older_than_days: Optional[float] = typer.Option(
        None, "--older-than-days", min=0, help="Delete what was written longer ago than this (default: the retention setting)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would be deleted; delete nothing."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Delete the prediction log's objects (drift sample, inspection stream, labels, remainders) and the
    endpoints' live summaries written before the retention window. Run it daily (cron, or a schedule).

    Example:

        leanops predictions prune --older-than-days 30
    """
    from leanops import prediction_log

    result = attempt(lambda: prediction_log.prune(older_than_days, dry_run), as_json)
    verb = "would delete" if dry_run else "deleted"
    answer(result, as_json, lambda: console.print(
        f"{verb} {len(result.deleted)} object(s) written before {result.cutoff}; {result.kept} kept", highlight=False))
