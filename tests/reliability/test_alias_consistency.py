"""Scenario 8 (the parts not covered elsewhere): a rollback with no previous champion ever, and rollbacks
that name a version or model that does not exist. Each fails with a message that says what is missing and
moves no alias.

Covered in tests/e2e/test_promote.py, not repeated here: a second rollback after the previous champion was
spent (test_rollback_restores_the_previous_champion_and_records_why), a promote after a rollback
(test_a_version_rolled_back_away_from_returns_only_by_a_persons_new_answer), a degradation with nothing to
roll back to (test_a_degradation_after_the_last_rollback_is_reported_and_failed_runs_alert), two
promotions racing (test_racing_promotions_end_with_one_champion_a_correct_previous_champion_and_both_decisions)."""

from __future__ import annotations

import pytest

from leanops import registry
from leanops.errors import ModelNotFound
from support import spec_copy

pytestmark = pytest.mark.e2e


def aliases(name: str) -> dict[str, str | None]:
    return {alias: registry.alias_version(name, alias) for alias in (registry.CHAMPION, registry.PREVIOUS_CHAMPION, registry.CHALLENGER)}


def rollback(**parameters):
    from flows.rollback import rollback as flow

    return flow(**parameters, return_state=True)


ROLLBACKS = [
    ("a rollback of a first champion", {}, "has no 'previous-champion' to roll back to; pass to_version"),
    ("a rollback to a version that does not exist", {"to_version": "99"}, "99"),
]


@pytest.mark.parametrize(("case", "parameters", "says"), ROLLBACKS, ids=[c[0] for c in ROLLBACKS])
def test_a_rollback_with_nothing_to_roll_back_to_says_so_and_moves_no_alias(small_champion, record, case, parameters, says):
    row = record("8 rollback, nothing to roll back to", case)
    name = small_champion["name"]
    before = aliases(name)
    assert before[registry.CHAMPION] == small_champion["version"] and before[registry.PREVIOUS_CHAMPION] is None

    state = rollback(spec=str(small_champion["spec_path"]), reason="reliability scenario 8", **parameters)

    assert state.is_failed()
    with pytest.raises(ModelNotFound) as raised:
        state.result()
    assert says in str(raised.value) and name in str(raised.value)
    assert aliases(name) == before
    row.survived, row.data_lost = True, "none (aliases unchanged)"


def test_a_rollback_of_a_model_never_registered_says_so(stack, tmp_path, record):
    row = record("8 rollback, nothing to roll back to", "a rollback of an unregistered model")
    name = "reliability-never-registered"
    state = rollback(spec=str(spec_copy(tmp_path, name)), reason="reliability scenario 8")

    assert state.is_failed()
    with pytest.raises(ModelNotFound, match=f"no registered model '{name}'"):
        state.result()
    assert not registry.model_exists(name)
    row.survived, row.data_lost = True, "none (nothing created)"
