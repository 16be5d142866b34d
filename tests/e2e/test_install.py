"""leanops installed like a library: a non-editable install into a fresh venv, used from a project folder.

The install takes the locked versions (uv.lock) from uv's cache, offline: `make setup` filled the cache
with exactly these, and nothing downloads at test time. The project folder holds only specs/ and data;
specs are read from there and local state goes there, never into site-packages.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
UV = Path(sys.executable).parent / "uv"
# What a checkout holds besides the code: environments, state, caches, build output.
NOT_SOURCE = shutil.ignore_patterns(".venv", ".venv-*", ".git", ".leanops", "__pycache__", "*.egg-info", "build", ".pytest_cache", "bench")


def run(argv: list, cwd: Path, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)  # noqa: S603


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with leanops installed from a copy of this checkout (the build writes into its source
    folder, which must not be the shared checkout). Yields the venv's bin folder."""
    work = tmp_path_factory.mktemp("install")
    source = work / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    started = time.monotonic()
    # A pylock file names each locked wheel's URL, which uv finds in its cache offline (a plain
    # name==version list needs the index pages, which `uv sync` from a lock never stores).
    exported = run([UV, "export", "--quiet", "--frozen", "--no-emit-project", "--format", "pylock.toml",
                    "-o", work / "pylock.toml", "--directory", source], work)
    assert exported.returncode == 0, exported.stderr
    created = run([UV, "venv", "--quiet", work / "venv", "--python", sys.executable], work)
    assert created.returncode == 0, created.stderr
    locked = run([UV, "pip", "install", "--quiet", "--offline", "--python", work / "venv" / "bin" / "python",
                  "-r", work / "pylock.toml"], work)
    assert locked.returncode == 0, locked.stdout[-3000:] + locked.stderr[-3000:]
    done = run([UV, "pip", "install", "--quiet", "--offline", "--no-deps", "--python", work / "venv" / "bin" / "python", source], work)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    print(f"\nnon-editable install into a fresh venv (offline, locked versions): {time.monotonic() - started:.1f} s")
    return work / "venv" / "bin"


@pytest.fixture
def project(tmp_path) -> Path:
    """A team's project folder: one spec and a data sample, nothing else."""
    from leanops import datasets

    (tmp_path / "specs").mkdir()
    shutil.copy(ROOT / "specs" / "flights-delay.yaml", tmp_path / "specs")
    datasets.flights_sample([1], rows_per_month=800, seed=3).to_csv(tmp_path / "january.csv", index=False)
    return tmp_path


def fresh_shell(bin_dir: Path) -> dict[str, str]:
    """No LEANOPS_ variables, no AWS or Prefect settings: what a new terminal has."""
    return {"PATH": f"{bin_dir}{os.pathsep}/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp"), "LANG": "C.UTF-8"}


def test_the_installed_package_lives_in_the_venv_not_in_this_checkout(installed, project):
    done = run([installed / "python", "-c", "import leanops, leanops_cli, flows; print(leanops.__file__)"], project, fresh_shell(installed))

    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).is_relative_to(installed.parent / "lib")


def test_leanops_spec_check_reads_specs_from_the_project_folder(installed, project):
    done = run([installed / "leanops", "spec", "check", "flights-delay", "--data", "january.csv"], project, fresh_shell(installed))

    assert done.returncode == 0, done.stdout + done.stderr
    assert "flights-delay" in done.stdout and "800" in done.stdout


def test_a_spec_the_project_does_not_have_is_a_clear_error(installed, project):
    import json

    done = run([installed / "leanops", "spec", "check", "churn", "--json"], project, fresh_shell(installed))

    assert done.returncode == 1
    assert json.loads(done.stdout)["problems"] == [f"no model spec at {project / 'specs' / 'churn.yaml'}"]


def test_settings_put_state_and_specs_in_the_working_directory(installed, project):
    script = "from leanops.settings import get_settings; s = get_settings(); print(s.home); print(s.specs_dir)"

    done = run([installed / "python", "-c", script], project, fresh_shell(installed))

    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(project / ".leanops"), str(project / "specs")]
    relocated = run([installed / "python", "-c", script], project, {**fresh_shell(installed), "LEANOPS_HOME": str(project / "state")})
    assert relocated.stdout.split()[0] == str(project / "state")
