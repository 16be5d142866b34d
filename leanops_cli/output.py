"""How commands answer: rich tables for people, one JSON document on stdout for scripts (``--json``)."""

from __future__ import annotations

import dataclasses
import json
import sys
from datetime import date, datetime
from typing import Any, Callable, NoReturn

import typer
from rich.console import Console
from rich.table import Table

# A terminal gives its own width; piped into a file or a pager, tables get room instead of rich's 80 columns.
_WIDTH = None if sys.stdout.isatty() else 160
console = Console(soft_wrap=True, width=_WIDTH)
errors = Console(stderr=True, soft_wrap=True, width=_WIDTH)

JSON_OPTION = typer.Option(False, "--json", help="Print one JSON document on stdout instead of text (for scripts).")


def plain(value: Any) -> Any:
    """Dataclasses, dates, paths and numpy scalars as JSON-ready values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [plain(v) for v in value]
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return value.item()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def print_json(payload: Any) -> None:
    # Straight to stdout, no rich markup or wrapping: scripts parse it.
    typer.echo(json.dumps(plain(payload), indent=2, sort_keys=False))


def answer(payload: Any, as_json: bool, show: Callable[[], None]) -> None:
    print_json(payload) if as_json else show()


def fail(message: str, as_json: bool, code: int = 1, **details: Any) -> NoReturn:
    """Exit with ``code`` after saying what went wrong (JSON on stdout with --json, text on stderr otherwise)."""
    if as_json:
        print_json({"ok": False, "error": message, **details})
    else:
        errors.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def attempt(call: Callable[[], Any], as_json: bool) -> Any:
    """``call()``, or the command's failure when it raises one of leanops' own errors (they say what to do)."""
    from leanops.errors import LeanopsError

    try:
        return call()
    except LeanopsError as exc:
        fail(str(exc), as_json)


def table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    shown = Table(title=title, title_justify="left", show_lines=False)
    for column in columns:
        shown.add_column(column, overflow="fold")
    for row in rows:
        shown.add_row(*("-" if cell in (None, "") else str(cell) for cell in row))
    return shown
