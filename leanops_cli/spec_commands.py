"""``leanops spec init`` and ``leanops spec check``: write a spec from data, and tell whether it would train."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from leanops_cli.output import JSON_OPTION, answer, console, fail, plain, table

app = typer.Typer(
    help="Write a model spec from a data sample, and check that a spec (and data) would train.\n\n"
    "Example: leanops spec init churn --data churn.csv --target churn && leanops spec check churn.yaml --data churn.csv",
    no_args_is_help=True,
)


@app.command("init")
def init(
    name: str = typer.Argument(..., help="Model name: lowercase letters, digits and dashes (also the MLflow model name)."),
    data: str = typer.Option(..., "--data", help="A sample of the data: .csv or .parquet, a local path or an s3:// URI."),
    target: str = typer.Option(..., "--target", help="The column holding the label."),
    positive: Optional[list[str]] = typer.Option(None, "--positive", help="The label value meaning positive (binary; repeat for several)."),
    positive_when_gt: Optional[float] = typer.Option(None, "--positive-when-gt", help="Binary from a number: positive when the target is above this."),
    task: Optional[str] = typer.Option(None, "--task", help="binary, multiclass or regression (default: inferred from the label)."),
    time: Optional[str] = typer.Option(None, "--time", help="Timestamp column: train on the past, hold out the most recent rows."),
    out: Optional[Path] = typer.Option(None, "--out", help="Where to write the spec (default: ./NAME.yaml)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Write a complete spec for NAME, inferred from a sample of the data: feature kinds, the task and label,
    and the data contract (dtypes, ranges with a margin, null shares, known categories). Every inferred line
    carries a comment saying what was seen; review it, then run **leanops spec check**.

    Example:

        leanops spec init churn --data churn.csv --target churn --positive yes
    """
    from leanops import specgen, storage
    from leanops.errors import LeanopsError

    path = out or Path(f"{name}.yaml")
    if path.exists() and not force:
        fail(f"{path} exists; pass --force to overwrite it, or --out another path", as_json)
    try:
        frame, _ = storage.read_table(data)
        text, spec = specgen.generate(
            frame, name, target, task=task, positive=positive or None, positive_when_gt=positive_when_gt, time=time, source=data,
        )
    except LeanopsError as exc:
        fail(str(exc), as_json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    summary = {
        "ok": True, "path": str(path), "model": spec.name, "task": spec.task, "rows_read": len(frame),
        "features": spec.feature_names, "target": spec.target.model_dump(exclude_none=True),
    }

    def show() -> None:
        console.print(f"wrote [bold]{path}[/]: {spec.task} model [bold]{spec.name}[/] with {len(spec.features)} features, from {len(frame):,} rows of {data}")
        console.print(f"next: review the comments, then: leanops spec check {path} --data {data}", highlight=False, soft_wrap=True)

    answer(summary, as_json, show)


@app.command("check")
def check(
    spec: str = typer.Argument(..., help="A spec name in the specs folder, or a path to a spec YAML."),
    data: Optional[str] = typer.Option(None, "--data", help="Data to check against the spec: .csv or .parquet, local or s3://."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Exit 0 when the spec (and the data, if given) would train; otherwise exit 1 and list every problem:
    the spec's own (fields that cannot work together) and the data's (contract, labels, features).

    Example:

        leanops spec check churn --data churn.csv
    """
    from leanops import speccheck

    report = speccheck.check_spec(spec, data)

    def show() -> None:
        if report.problems:
            console.print(table(f"{report.spec}: {len(report.problems)} problem(s)", ["problem"], [[p] for p in report.problems]))
        for warning in report.warnings:
            console.print(f"[yellow]warning:[/] {warning}", highlight=False)
        if report.ok:
            console.print(f"[green]ok[/]: {report.summary}", highlight=False)

    answer({"ok": report.ok, **plain(report)}, as_json, show)
    raise typer.Exit(0 if report.ok else 1)
