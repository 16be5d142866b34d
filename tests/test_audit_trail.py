"""The audit trail lives in audit runs (one per alias move), not in tags on the registered model:
against the session's real MLflow server, many moves leave the model's tags as they were, the history
keeps its order and content, a legacy tag trail migrates exactly once, a move MLflow cannot record does
not happen, and the trail is read back by a new server process from MLflow's database alone."""

from __future__ import annotations

import sqlite3
import uuid

import pytest

from leanops import audit, registry
from leanops.aliases import alias_history, apply_rollback, migrate_legacy_trail
from leanops.results import AliasChange
from leanops.settings import Settings

pytestmark = pytest.mark.e2e


def new_model_with_versions(count: int) -> tuple[str, list[str]]:
    """A fresh registered model with ``count`` versions (no artifacts: alias moves need none) and v1 champion."""
    name = f"audit-{uuid.uuid4().hex[:8]}"
    mlflow = registry.client()
    mlflow.create_registered_model(name)
    versions = [str(mlflow.create_model_version(name, source=f"s3://nowhere/{name}/{i}").version) for i in range(count)]
    registry.set_alias(name, registry.CHAMPION, versions[0])
    return name, versions


def swap_champion(name: str, times: int, versions: list[str]) -> list[AliasChange]:
    changes = []
    for i in range(times):
        champion, target = versions[i % 2], versions[(i + 1) % 2]
        changes.append(apply_rollback(name, champion, target, reason=f"move {i}", by="test"))
    return changes


def model_tags(name: str) -> dict[str, str]:
    return registry.get_model_tags(name)


def legacy_entry(name: str, i: int) -> AliasChange:
    return AliasChange(name, "promoted", str(i + 1), str(i) if i else None, str(i + 1), str(i) if i else None,
                       f"legacy move {i} " + "x" * (9000 if i == 1 else 0), "gates",
                       f"2025-0{i + 1}-01T00:00:00+00:00", f"http://ui/run/{i}", audit.audit_key())


def test_many_moves_leave_the_model_tags_unchanged_and_the_history_in_order(mlflow_server):
    name, versions = new_model_with_versions(2)
    registry.set_model_tag(name, "leanops.current", "state")
    tags_before = model_tags(name)

    made = swap_champion(name, 12, versions)

    assert model_tags(name) == tags_before
    assert alias_history(name) == made
    assert [c.reason for c in alias_history(name)] == [f"move {i}" for i in range(12)]
    assert registry.alias_version(name, registry.CHAMPION) == versions[0]


def test_a_legacy_tag_trail_migrates_exactly_once(mlflow_server):
    name, versions = new_model_with_versions(2)
    legacy = [legacy_entry(name, i) for i in range(3)]
    registry.set_model_tags(name, dict(audit.audit_tag(change) for change in legacy) | {"leanops.current": "state"})

    assert migrate_legacy_trail(name) == 3
    assert model_tags(name) == {"leanops.current": "state"}
    assert alias_history(name) == legacy  # exact, a 9,000-character reason included
    # Interrupted after the runs were written but before a tag was deleted: the tag goes, no entry doubles.
    registry.set_model_tags(name, dict([audit.audit_tag(legacy[1])]))
    assert migrate_legacy_trail(name) == 1
    assert migrate_legacy_trail(name) == 0
    assert alias_history(name) == legacy

    # A move after the migration appends to the migrated trail.
    moved = swap_champion(name, 1, versions)
    assert alias_history(name) == legacy + moved


def test_reading_the_history_migrates_a_legacy_trail_by_itself(mlflow_server):
    name, _ = new_model_with_versions(1)
    legacy = [legacy_entry(name, i) for i in range(2)]
    registry.set_model_tags(name, dict(audit.audit_tag(change) for change in legacy))

    assert alias_history(name) == legacy
    assert model_tags(name) == {}


def test_a_move_whose_entry_cannot_be_written_does_not_happen(mlflow_server):
    name, versions = new_model_with_versions(2)
    mlflow = registry.client()
    # MLflow refuses runs in a deleted experiment: the entry cannot be written.
    mlflow.delete_experiment(mlflow.create_experiment(f"leanops/{name}/audit"))

    with pytest.raises(Exception, match="(?i)deleted|active"):
        apply_rollback(name, versions[0], versions[1], reason="never", by="test")

    assert registry.alias_version(name, registry.CHAMPION) == versions[0]
    assert registry.get_version(name, versions[1]).tags == {}


def test_a_failed_move_leaves_a_failed_entry_out_of_the_history(mlflow_server):
    name, versions = new_model_with_versions(2)
    registry.client().delete_model_version(name, versions[1])

    with pytest.raises(Exception, match="has no version"):
        apply_rollback(name, versions[0], versions[1], reason="to a deleted version", by="test")

    assert registry.alias_version(name, registry.CHAMPION) == versions[0]
    assert alias_history(name) == []
    mlflow = registry.client()
    experiment = mlflow.get_experiment_by_name(f"leanops/{name}/audit")
    [run] = mlflow.search_runs([experiment.experiment_id])
    assert run.info.status == "FAILED"
    assert "has no version" in run.data.tags["leanops.audit.failure"]


def test_the_trail_is_read_back_by_a_new_server_from_the_database_alone(mlflow_server, settings, tmp_path):
    """A restart of the local stack: a new MLflow process on a copy of the database (no artifact store
    content, nothing in memory) reads the same history."""
    from conftest import HOME, _free_port
    from infra import services

    name, versions = new_model_with_versions(2)
    made = swap_champion(name, 3, versions)

    copy = tmp_path / "mlflow.db"
    with sqlite3.connect(HOME / "mlflow" / "mlflow.db") as source, sqlite3.connect(copy) as target:
        source.backup(target)
    service = services.mlflow_server(tmp_path, settings.host, _free_port(), artifacts_destination=str(tmp_path / "empty"),
                                     backend_uri=f"sqlite:///{copy}")
    services.start(service, tmp_path)
    try:
        restarted = Settings(mlflow_tracking_uri=service.health_url.removesuffix("/health"), home=tmp_path / "home")
        assert alias_history(name, settings=restarted) == made
    finally:
        services.stop(service, tmp_path)
