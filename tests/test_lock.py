"""uv.lock pins the versions the tests pass with; `make setup` installs exactly those, and refuses a
lock that no longer matches pyproject.toml."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UV = Path(sys.executable).parent / "uv"


def test_the_lock_matches_pyproject():
    done = subprocess.run([str(UV), "lock", "--locked", "--offline"], cwd=ROOT, capture_output=True, text=True, timeout=120)  # noqa: S603

    assert done.returncode == 0, f"uv.lock is stale: run .venv/bin/uv lock and commit it\n{done.stderr}"


def test_this_environment_runs_the_locked_versions():
    from importlib import metadata

    locked = {p["name"]: p["version"] for p in tomllib.loads((ROOT / "uv.lock").read_text())["package"] if "version" in p}
    for name in ("prefect", "mlflow", "evidently", "pandas", "xgboost", "optuna", "pydantic", "boto3", "moto"):
        assert metadata.version(name) == locked[name], name
