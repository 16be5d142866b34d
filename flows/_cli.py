"""Run any flow from the command line: `python -m flows.<name> --param value ...`.

Options come from the flow's own signature, so the command line never drifts from the flow.
"""

from __future__ import annotations

import argparse
import inspect
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
    kind = args[0]
    return {bool: _parse_bool, int: int, float: float}.get(kind, str)


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
    state = flow(**params, return_state=True)
    print(state.result(raise_on_failure=False))
    sys.exit(0 if state.is_completed() else 1)
