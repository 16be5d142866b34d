"""The fault-injection table: its rows, carried on test reports, and the summary that prints them.

Rows travel on the reports (user_properties), so the table is printed whole by the process that
reports: the only one, or pytest-xdist's controller gathering its workers' reports. The hooks are
registered by tests/conftest.py, which every process loads (the controller never collects this folder)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

PROPERTY = "fault-injection"
_RESULTS: list["Outcome"] = []


@dataclass
class Outcome:
    scenario: str
    faults: str
    survived: bool = False
    data_lost: str = "?"
    recover_seconds: float | None = None


def attach(node, outcomes: list[Outcome]) -> None:
    """After the test, the rows as it left them: the teardown report carries them."""
    node.user_properties.extend((PROPERTY, asdict(outcome)) for outcome in outcomes)


def pytest_runtest_logreport(report):
    if report.when == "teardown":
        _RESULTS.extend(Outcome(**row) for name, row in report.user_properties if name == PROPERTY)


def pytest_terminal_summary(terminalreporter):
    if not _RESULTS:
        return
    rows = [("scenario", "faults injected", "survived", "data lost", "time to recover")]
    for r in _RESULTS:
        recovered = "-" if r.recover_seconds is None else f"{r.recover_seconds:.1f} s"
        rows.append((r.scenario, r.faults, "yes" if r.survived else "NO", r.data_lost, recovered))
    lines = aligned(rows, " | ")
    terminalreporter.section("fault injection")
    terminalreporter.write_line(lines[0])
    terminalreporter.write_line("-+-".join("-" * len(cell) for cell in lines[0].split(" | ")))
    for line in lines[1:]:
        terminalreporter.write_line(line)


def aligned(rows: list[tuple[str, ...]], separator: str = "  ", right_from: int | None = None) -> list[str]:
    """Rows of cells as lines of columns as wide as their widest cell; columns from ``right_from`` on
    (numbers) are right-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    right = len(widths) if right_from is None else right_from
    return [separator.join(cell.rjust(w) if i >= right else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths)))
            for row in rows]
