"""schedule: start the scheduled retrains that are due, every spec by its own cron, each once.

    python -m flows.schedule --lookback-minutes 60
"""

from __future__ import annotations

from prefect import flow

from leanops import schedule as schedules
from tasks.alert import alert_on_failure
from tasks.schedule import plan_due_retrains, start_retrain

RETRAIN_DEPLOYMENT = "retrain/on-schedule"


@flow(name="schedule", log_prints=True, on_failure=[alert_on_failure])
def schedule(lookback_minutes: float = 60.0, deployment: str = RETRAIN_DEPLOYMENT) -> list[str]:
    """Start ``deployment`` (reason ``schedule``) for every model in the specs folder whose ``schedule.cron``
    came due within the last ``lookback_minutes``; retired models are skipped. A due time is started once,
    however many passes see it. Specs that do not load fail this run after the others were started.
    Returns the ids of the retrain runs."""
    plan = plan_due_retrains(lookback_minutes)
    started = [start_retrain(due, deployment) for due in plan.due]
    if plan.unreadable:
        raise schedules.unreadable_specs_error(plan.unreadable)
    return started


if __name__ == "__main__":
    from flows._cli import run_from_command_line

    run_from_command_line(schedule)
