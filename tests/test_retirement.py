"""Retirement is one tag on the MLflow registered model: every worker reads the same answer, it survives
restarts, and an unreadable registry is an error, never "active"."""

from __future__ import annotations

import pytest

from leanops import registry, retirement
from leanops.errors import RegistryUnavailable
from leanops.settings import Settings


@pytest.fixture
def mlflow_db(tmp_path) -> Settings:
    """A real MLflow registry in a SQLite file (no server needed for these reads and writes)."""
    return Settings(mlflow_tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", home=tmp_path)


def test_retire_reinstate_round_trip_keeps_the_first_record(mlflow_db):
    assert retirement.is_retired("churn", mlflow_db) is False  # never registered: active

    first = retirement.retire("churn", "replaced by churn-v2", by="ana", settings=mlflow_db)
    again = retirement.retire("churn", "another reason", by="bo", settings=mlflow_db)

    assert again == first and (first.reason, first.retired_by) == ("replaced by churn-v2", "ana")
    assert retirement.is_retired("churn", mlflow_db)
    assert registry.model_exists("churn", mlflow_db)  # retiring a model before its first training registers the name
    assert retirement.reinstate("churn", mlflow_db) is True
    assert retirement.is_retired("churn", mlflow_db) is False
    assert retirement.reinstate("churn", mlflow_db) is False


def test_a_tag_set_by_hand_in_the_mlflow_ui_retires_too(mlflow_db):
    registry.set_model_tag("churn", retirement.RETIRED_TAG, "true", mlflow_db)
    record = retirement.retirement("churn", mlflow_db)
    assert record is not None and record.reason == "true"


def test_an_unreachable_registry_is_an_error_not_active(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    dead = Settings(mlflow_tracking_uri="http://127.0.0.1:9", home=tmp_path)
    with pytest.raises(RegistryUnavailable, match="get_model_tag"):
        retirement.is_retired("churn", dead)
