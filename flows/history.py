"""history: who was champion of a model when, and why, from the registry's audit trail.

    python -m flows.history --spec flights-delay
"""

from __future__ import annotations

from prefect import flow

from leanops import audit
from leanops.results import AliasChange
from tasks.promote import read_alias_history
from tasks.spec import load_model_spec


@flow(name="alias-history", log_prints=True)
def history(spec: str) -> list[AliasChange]:
    """Print every promotion, rejection and rollback of the model, oldest first."""
    model_spec = load_model_spec(spec)
    changes = read_alias_history(model_spec)
    print(f"alias history of {model_spec.registered_model_name}:\n{audit.format_history(changes)}")
    return changes


if __name__ == "__main__":
    from flows._cli import run_from_command_line

    run_from_command_line(history)
