"""Moving a model's aliases, each move written with its audit entry: promotion, rollback, history.

Composes the MLflow adapters' reads and writes (``leanops.registry``, ``leanops.tracking``) with the
decisions (``leanops.promotion``) and the trail's entries (``leanops.audit``). The moves read the
champion, decide from that reading and write: callers hold the model's "aliases" lock (tasks/promote.py).

The trail is one MLflow run per entry in the model's audit experiment (``leanops/<model>/audit``), kept
in MLflow's database and paged, so the registered model holds only its current state (aliases, version
tags) however many moves it sees. The order, so that no alias moves without its entry:
1. the entry is written first, as a RUNNING run: if MLflow refuses it, nothing moves;
2. the aliases (and the version tags) are written;
3. the run is ended FINISHED, or FAILED with the error when a write of step 2 failed.
The history is the FINISHED runs, ordered by the entry's time-ordered key. A run left RUNNING (the
process died or MLflow went away between 2 and 3) is not in the history; the retried promotion finds its
move unexplained by the trail and records it again (see :func:`apply_promotion`).
Legacy trails (one registered-model tag per entry) are moved into runs the first time the model's
trail is read or written (:func:`migrate_legacy_trail`, idempotent).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from leanops import audit, promotion, registry, tracking
from leanops.errors import AliasConflict, ModelNotFound
from leanops.results import AliasChange, PromotionDecision, RollbackCheck
from leanops.settings import Settings


@contextmanager
def recorded(change: AliasChange, details: dict[str, str], settings: Settings | None = None) -> Iterator[None]:
    """Write ``change``'s audit entry around the alias moves done inside the block (order: module docstring)."""
    migrate_legacy_trail(change.model_name, settings)
    run_id = _start_entry(change.model_name, audit.entry_tags(change, details), audit.entry_run_name(change), settings=settings)
    try:
        yield
    except BaseException as exc:
        try:
            _end_entry(run_id, failure=f"{type(exc).__name__}: {exc}", settings=settings)
        except Exception:  # noqa: BLE001 - MLflow is what failed: the entry stays RUNNING, out of the history either way
            pass
        raise
    _end_entry(run_id, settings=settings)


def _audit_experiment(name: str) -> str:
    return f"leanops/{name}/audit"


def _start_entry(name: str, tags: dict[str, str], run_name: str, start_time_ms: int | None = None,
                 settings: Settings | None = None) -> str:
    """A run (status RUNNING) in the model's audit experiment holding one entry; returns its id."""
    return tracking.start_run(_audit_experiment(name), run_name, tags, start_time_ms, settings=settings).run_id


def _end_entry(run_id: str, failure: str | None = None, settings: Settings | None = None) -> None:
    """FINISHED (the entry holds), or FAILED with why (the move it announced did not happen)."""
    if failure is not None:
        tracking.set_run_tag(run_id, "leanops.audit.failure", failure[:8000], settings=settings)
    tracking.end_run(run_id, failed=failure is not None, settings=settings)


def _move_champion(name: str, new_version: str, old_version: str | None, settings: Settings | None = None) -> None:
    # previous-champion first: an interruption between the two writes leaves the old champion
    # serving with a correct rollback target, never a new champion with a stale one.
    if old_version is not None:
        registry.set_alias(name, registry.PREVIOUS_CHAMPION, old_version, settings)
    registry.set_alias(name, registry.CHAMPION, new_version, settings)


def apply_promotion(decision: PromotionDecision, flow_run_url: str = "", settings: Settings | None = None) -> AliasChange:
    """Apply a (possibly approved) decision against the champion as it is now, and record it.

    Returns the AliasChange: ``promoted`` / ``rejected`` (recorded), ``noop`` (the challenger already is
    champion) or ``stale`` (the champion changed since the decision: nothing moved, nothing recorded)."""
    name = decision.model_name
    champion = registry.alias_version(name, registry.CHAMPION, settings)
    previous = registry.alias_version(name, registry.PREVIOUS_CHAMPION, settings)
    action = promotion.plan_alias_move(decision, champion)
    if action == "noop" and decision.promote and previous == decision.champion_version \
            and not promotion.trail_explains(alias_history(name, settings), champion):
        # An earlier attempt of this very decision moved the aliases but failed before recording it
        # (the task retried): apply it again (the same writes) and record it, so the trail misses no move.
        action, champion = "promoted", decision.champion_version
    change = audit.promotion_change(decision, action, champion, previous, flow_run_url)
    if action in ("noop", "stale"):
        return change
    version_tags = audit.decision_tags(decision, change)
    with recorded(change, version_tags, settings):
        if action == "promoted":
            # Deleted meanwhile, or a half-registered version: ModelNotFound, nothing moved.
            registry.require_complete(registry.get_version(name, decision.challenger_version, settings))
            _move_champion(name, decision.challenger_version, champion, settings)
        registry.set_version_tags(name, change.version, version_tags, settings)
    return change


def rollback_candidates(
    name: str, to_version: str | None = None, settings: Settings | None = None, missing_ok: bool = False
) -> tuple[registry.ModelVersionInfo, registry.ModelVersionInfo | None]:
    """(current champion, version to roll back to): ``to_version`` or the ``previous-champion``. With no
    previous champion (none yet, or spent by an earlier rollback): ModelNotFound, or None if ``missing_ok``."""
    if not registry.model_exists(name, settings):
        raise ModelNotFound(f"no registered model {name!r}")
    champion = registry.get_champion(name, settings)
    if to_version is not None:
        return champion, registry.require_complete(registry.get_version(name, str(to_version), settings))
    previous = registry.get_alias(name, registry.PREVIOUS_CHAMPION, settings)
    if previous is None and not missing_ok:
        raise ModelNotFound(f"model {name!r} has no {registry.PREVIOUS_CHAMPION!r} to roll back to; pass to_version")
    return champion, previous


def apply_rollback(
    name: str, expected_champion: str, target: str, check: RollbackCheck | None = None, reason: str = "", by: str = "rollback",
    flow_run_url: str = "", settings: Settings | None = None,
) -> AliasChange:
    """Move ``champion`` to ``target`` (unless ``check`` says the target is not better: ``kept``), drop
    ``previous-champion`` and record why. Raises AliasConflict if the champion is no longer ``expected_champion``."""
    champion = registry.alias_version(name, registry.CHAMPION, settings)
    previous = registry.alias_version(name, registry.PREVIOUS_CHAMPION, settings)
    if champion != str(expected_champion):
        raise AliasConflict(
            f"the champion of {name!r} changed to v{champion or 'none'} (expected v{expected_champion}) "
            "during the rollback; nothing was changed: run it again"
        )
    why = promotion.rollback_reason(check, reason)
    if str(target) == champion:
        return audit.rollback_change(name, "noop", str(target), champion, previous, f"v{target} already is the champion", by, flow_run_url)
    action = "kept" if check is not None and not check.previous_is_better else "rolled_back"
    change = audit.rollback_change(name, action, str(target), champion, previous, why, by, flow_run_url)
    version_tags = audit.rollback_tags(change)
    with recorded(change, version_tags, settings):
        if action == "rolled_back":
            registry.require_complete(registry.get_version(name, str(target), settings))
            registry.set_alias(name, registry.CHAMPION, str(target), settings)
            if previous is not None:
                registry.delete_alias(name, registry.PREVIOUS_CHAMPION, settings)
            # No alias leads back to the version rolled away from, and its tag makes any promotion of it
            # wait for a person's new decision (a plain promote would otherwise judge it again).
            registry.set_version_tags(name, champion, audit.rolled_back_tags(change), settings)
            if registry.alias_version(name, registry.CHALLENGER, settings) == champion:
                registry.delete_alias(name, registry.CHALLENGER, settings)
        registry.set_version_tags(name, change.version, version_tags, settings)
    return change


def alias_history(name: str, settings: Settings | None = None) -> list[AliasChange]:
    """Every recorded promotion, rejection and rollback of the model, oldest first."""
    migrate_legacy_trail(name, settings)
    return _recorded_changes(name, settings)


def _recorded_changes(name: str, settings: Settings | None = None) -> list[AliasChange]:
    # Keyed by the entry's key: two readers migrating the same legacy tag at once write it twice, harmlessly.
    changes = {}
    finished = tracking.find_runs(_audit_experiment(name), "attributes.status = 'FINISHED'",
                                  ["attributes.start_time ASC"], settings=settings)
    for run in finished:
        change = audit.change_from_entry(run.tags)
        changes.setdefault(change.key, change)
    return [changes[key] for key in sorted(changes)]


def migrate_legacy_trail(name: str, settings: Settings | None = None) -> int:
    """Move the legacy trail (``leanops.audit.<key>`` tags on the registered model) into audit runs, each
    at its own time, and delete those tags. Idempotent: an entry already in a run only loses its tag.
    Returns how many tags it moved. ModelNotFound when there is no such model."""
    tags = registry.get_model_tags(name, settings)
    legacy = sorted(key for key in tags if key.startswith(audit.AUDIT_TAG_PREFIX))
    if not legacy:
        return 0
    already = {change.key for change in _recorded_changes(name, settings)}
    for tag_key in legacy:
        change = audit.change_from_tag(tags[tag_key])
        if change.key not in already:
            run_id = _start_entry(name, audit.entry_tags(change), audit.entry_run_name(change),
                                  start_time_ms=audit.epoch_ms(change.at), settings=settings)
            _end_entry(run_id, settings=settings)
        # Deleted only once its run is FINISHED: an interruption leaves the tag, and the next call moves it.
        registry.delete_model_tags(name, [tag_key], settings)
    return len(legacy)
