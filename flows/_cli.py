"""Run any flow from the command line: `python -m flows.<name> --param value ...`.

Options come from the flow's own signature, so the command line never drifts from the flow.
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
import typing
from pathlib import Path


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def _converter(annotation) -> typing.Callable[[str], object]:
    args = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
    if str in args:  # e.g. a version: `6` or `challenger`, both kept as text
        return str
    kind = args[0]
    return {bool: _parse_bool, int: int, float: float}.get(kind, str)


def _use_the_leanops_prefect_api() -> None:
    """Without an API URL Prefect runs the flow against a throwaway server of its own: the run, its events
    and the retrain cooldown would never reach the stack. Use the one leanops is configured for (by
    default the local stack's), unless Prefect already has one (environment or profile)."""
    from prefect.context import refresh_global_settings_context
    from prefect.settings import get_current_settings

    from leanops.settings import get_settings

    if get_current_settings().api.url:
        return
    os.environ["PREFECT_API_URL"] = get_settings().resolved_prefect_api_url
    refresh_global_settings_context()


def run_from_command_line(flow, argv: list[str] | None = None):
    hints = typing.get_type_hints(flow.fn)
    parser = argparse.ArgumentParser(prog=f"python -m flows.{Path(sys.argv[0]).stem}", description=flow.description)
    for name, parameter in inspect.signature(flow.fn).parameters.items():
        default = None if parameter.default is inspect.Parameter.empty else parameter.default
        parser.add_argument(
            f"--{name.replace('_', '-')}", dest=name, type=_converter(hints.get(name, str)), default=default,
            required=parameter.default is inspect.Parameter.empty, help=f"(default: {default})",
        )
    params = {k: v for k, v in vars(parser.parse_args(argv)).items() if v is not None}
    _use_the_leanops_prefect_api()
    state = flow(**params, return_state=True)
    # The flow printed (and logged) what it did; its return value is for callers, not for this terminal.
    if state.is_completed():
        print(f"{flow.name}: {state.name}")
        sys.exit(0)
    print(f"{flow.name}: {state.name}" + (f": {state.message}" if state.message else ""), file=sys.stderr)
    sys.exit(1)
