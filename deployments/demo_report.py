"""Formatting the demo's table, and checking it shows every decision."""

from __future__ import annotations


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def line(row: dict) -> str:
    return "; ".join(f"{k}: {_cell(v)}" for k, v in row.items())


def table(rows: list[dict]) -> str:
    if not rows:
        return "(no months)"
    headers = list(rows[0])
    cells = [[_cell(r[h]) for h in headers] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    out = [" | ".join(h.ljust(w) for h, w in zip(headers, widths)), "-+-".join("-" * w for w in widths)]
    out += [" | ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
    return "\n".join(out)


# Each decision the demo must show, and the words its row says it with.
DECISIONS = {
    "a batch with no drift and no action": "no drift: nothing to do",
    "drift -> retrain -> promote": "drift -> retrain -> promoted",
    "a challenger rejected by its gates": "rejected by its gates",
    "a malformed batch rejected, champion unchanged": "batch rejected, champion unchanged",
    "a degradation answered by a rollback": "rolled back",
    "a manual approval through the Resume form": "manual approval: a person",
}


def decisions_seen(rows: list[dict]) -> str:
    said = [str(row.get("what happened", "")) for row in rows]
    lines = [f"  [{'x' if any(words in s for s in said) else ' '}] {decision}" for decision, words in DECISIONS.items()]
    return "Decisions shown:\n" + "\n".join(lines)
