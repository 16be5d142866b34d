"""How large a batch this process may read: a file bigger than the memory it has left is refused with a
clear error before a byte is read, instead of ending the run in MemoryError (retried as if it were an
outage) or the kernel's OOM killer (a Crashed run and no record of why).

The budget is ``max_batch_bytes`` if set; otherwise what the process's own memory limit leaves free
(RLIMIT_DATA, counted against the heap in use, or RLIMIT_AS against the address space), divided by
``batch_memory_factor``. A process without a limit refuses nothing.
"""

from __future__ import annotations

import re
import resource
from pathlib import Path

from leanops.errors import BatchTooLarge
from leanops.settings import Settings, get_settings

# Each limit is compared with the part of /proc/self/status it counts.
_LIMITS = ((resource.RLIMIT_DATA, "VmData", "RLIMIT_DATA"), (resource.RLIMIT_AS, "VmSize", "RLIMIT_AS"))


def _in_use_bytes(field: str) -> int:
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:  # not Linux: count nothing in use, the limit alone bounds the budget
        return 0
    found = re.search(rf"^{field}:\s+(\d+) kB", status, re.MULTILINE)
    return int(found.group(1)) * 1024 if found else 0


def batch_budget(settings: Settings | None = None) -> tuple[int | None, str]:
    """(the largest batch file this process reads, in bytes, or None for no limit; where that comes from)."""
    settings = settings or get_settings()
    if settings.max_batch_bytes is not None:
        return settings.max_batch_bytes, "LEANOPS_MAX_BATCH_BYTES"
    budgets = []
    for limit_id, field, name in _LIMITS:
        soft, _hard = resource.getrlimit(limit_id)
        if soft != resource.RLIM_INFINITY:
            free = max(0, soft - _in_use_bytes(field))
            budgets.append((int(free / settings.batch_memory_factor), (
                f"{name} {_mb(soft)} with {_mb(free)} free, / LEANOPS_BATCH_MEMORY_FACTOR {settings.batch_memory_factor:g}"
            )))
    return min(budgets) if budgets else (None, "no memory limit")


def check_batch_fits(uri: str, size: int, settings: Settings | None = None,
                     advice: str = "split the batch into smaller files, or give the worker more memory (or set LEANOPS_MAX_BATCH_BYTES)") -> None:
    """Raise BatchTooLarge if a ``size``-byte file at ``uri`` is more than this process may read."""
    budget, source = batch_budget(settings)
    if budget is not None and size > budget:
        raise BatchTooLarge(f"{uri}: {_mb(size)} is more than this run may read into memory ({_mb(budget)}: {source}); {advice}")


def _mb(size: float) -> str:
    return f"{size / 1e6:,.0f} MB" if size >= 1e6 else f"{size:,.0f} bytes"
