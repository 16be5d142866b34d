"""Backup and restore of MLflow's PostgreSQL database (infra/backup.py, infra/README.md): a real MLflow
server on a database of its own on the machine's PostgreSQL (127.0.0.1:5432), a champion registered,
the database dumped, then dropped (its connections closed) and restored under the running server:
the champion alias resolves to the same version, which loads and predicts as before. (MLflow's engine
pings a pooled connection before use, so the server reconnects; one server start keeps this test short.)"""

from __future__ import annotations

import socket
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from infra import backup, services
from leanops import registry
from leanops.settings import Settings

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_exists(database: backup.Database) -> bool:
    done = subprocess.run(
        ["psql", "--dbname=postgres", "-Atc", f"SELECT count(*) FROM pg_database WHERE datname = '{database.name}'"],
        env=database.env(), capture_output=True, text=True, check=True,
    )
    return done.stdout.strip() == "1"


def backup_cli(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "infra.backup", *args], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


REGISTER_CHAMPION = """
import sys
import mlflow
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

tracking_uri, name, alias = sys.argv[1:]
X, y = load_iris(return_X_y=True, as_frame=True)
mlflow.set_tracking_uri(tracking_uri)
mlflow.set_registry_uri(tracking_uri)
mlflow.set_experiment(f"{name}-training")
with mlflow.start_run():
    mlflow.sklearn.log_model(LogisticRegression(max_iter=500).fit(X, y), name="model", registered_model_name=name,
                             pip_requirements=["scikit-learn"])
mlflow.MlflowClient().set_registered_model_alias(name, alias, "1")
"""


def register_champion(tracking_uri: str, name: str):
    """Version 1 of a small scikit-learn model, aliased champion; returns its input rows.

    Registered from a child process: MLflow's fluent API keeps the active experiment in process-wide state
    (``set_experiment``), which would leak this server's experiment id into every later in-process run of
    the test session and break their model logging on the session's own server. The child sets its registry
    URI too: ``mlflow.set_registry_uri`` (leanops.mlflow_access.activate) also writes MLFLOW_REGISTRY_URI into
    this process's environment, and a child inheriting it registered the model on the session's server
    (500s: the logged model is not there). Serially this module ran before any activate(); under xdist not."""
    from sklearn.datasets import load_iris

    done = subprocess.run([sys.executable, "-c", REGISTER_CHAMPION, tracking_uri, name, registry.CHAMPION],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    X, _ = load_iris(return_X_y=True, as_frame=True)
    return X.head(20)


def test_mlflow_database_dumped_dropped_and_restored_keeps_the_champion(tmp_path):
    name = f"backup-{uuid.uuid4().hex[:8]}"
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/leanops_backup_{uuid.uuid4().hex[:12]}"
    database = backup.Database.from_url(url)
    home = tmp_path / "home"
    server = services.mlflow_server(home, "127.0.0.1", free_port(), str(tmp_path / "artifacts"), url)
    settings = Settings(mlflow_tracking_uri=server.health_url.removesuffix("/health"), home=home)
    backup.recreate(database)
    try:
        services.start(server, home)
        rows = register_champion(settings.resolved_mlflow_tracking_uri, name)
        before = registry.get_champion(name, settings)
        predicted = registry.load_model(before, settings).predict(rows)

        dump = tmp_path / "backups" / "mlflow.dump"
        assert "dumped" in backup_cli("dump", "--database", url, "--to", str(dump))
        assert dump.stat().st_size > 0

        subprocess.run(["dropdb", "--force", "--maintenance-db=postgres", database.name], env=database.env(), check=True)
        assert not database_exists(database)

        assert "restored" in backup_cli("restore", "--database", url, "--from", str(dump), "--recreate")
        after = registry.get_champion(name, settings)
        assert (after.version, after.run_id, after.source) == (before.version, before.run_id, before.source) == ("1", before.run_id, before.source)
        np.testing.assert_array_equal(registry.load_model(after, settings).predict(rows), predicted)
    finally:
        services.stop(server, home)
        subprocess.run(["dropdb", "--if-exists", "--force", "--maintenance-db=postgres", database.name], env=database.env(), check=False)


def test_restore_refuses_a_missing_dump_and_a_url_without_database(tmp_path):
    missing = subprocess.run(
        [sys.executable, "-m", "infra.backup", "restore", "--database", "postgresql://postgres@127.0.0.1:5432/leanops_nothing",
         "--from", str(tmp_path / "none.dump"), "--recreate"], cwd=ROOT, capture_output=True, text=True, check=False,
    )
    assert missing.returncode == 1 and "no dump at" in missing.stderr
    assert not database_exists(backup.Database.from_url("postgresql://postgres@127.0.0.1:5432/leanops_nothing"))
    with pytest.raises(ValueError, match="names no database"):
        backup.Database.from_url("postgresql://postgres@127.0.0.1:5432/")
    # A password never reaches a command line: it travels in PGPASSWORD.
    database = backup.Database.from_url("postgresql+psycopg://leanops:s%40cret@db.example:6543/leanops_mlflow")
    assert (database.host, database.port, database.user, database.name) == ("db.example", 6543, "leanops", "leanops_mlflow")
    assert database.env()["PGPASSWORD"] == "s@cret"
