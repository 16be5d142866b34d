"""The demo's closing checklist says which decisions its table shows, and a rejected batch's cell
names the broken contract rather than a wall of text."""

from __future__ import annotations

from deployments import demo_report
from deployments.demo import short_reason

ROWS = [
    {"batch": "2013-07", "what happened": "drift -> retrain -> promoted v2"},
    {"batch": "2013-09", "what happened": "no drift: nothing to do"},
    {"batch": "2013-12", "what happened": "drift -> retrain -> challenger v4 rejected by its gates: guardrail"},
]


def test_the_checklist_marks_what_the_table_shows_and_only_that():
    checklist = demo_report.decisions_seen(ROWS)

    assert "[x] a batch with no drift and no action" in checklist
    assert "[x] drift -> retrain -> promote" in checklist
    assert "[x] a challenger rejected by its gates" in checklist
    assert "[ ] a degradation answered by a rollback" in checklist
    assert "[ ] a manual approval through the Resume form" in checklist


def test_a_contract_violation_reads_as_its_first_problem_and_a_count():
    message = (
        "Flow run encountered an exception: ContractViolation: batch s3://leanops/incoming/flights-delay/x.parquet "
        "violates its data contract (2 problems):\n  - column 'temp' is entirely null\n  - column 'dewp' is entirely null"
    )

    assert short_reason(message) == (
        "ContractViolation: violates its data contract (2 problems): column 'temp' is entirely null, +1 more"
    )
