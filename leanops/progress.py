"""Progress of long work, for whoever watches it.

The library only calls back; the tasks turn the calls into a Prefect progress artifact
(tasks/_progress.py), so a user sees a window being read, a study's trials or a bucket being listed move
in the UI instead of a run that says nothing for minutes.
"""

from __future__ import annotations

from typing import Callable

Progress = Callable[[float, str], None]
"""Called with (share of the work done, 0..1; what has been done, in words). Shares never go down."""


def quiet(share: float, done: str) -> None:
    """Nobody watches: the default."""
