"""A registered version is self-contained: MLflow's own scoring server, in a fresh venv that has MLflow,
XGBoost, scikit-learn, pandas and skops (the versions of uv.lock) but not leanops, loads
``models:/<name>@champion`` from the test session's MLflow server and answers a real /invocations
request with the predictions ``mlflow.pyfunc`` gives in the project's venv on the same rows.

The venv is built offline from uv's cache (93 of uv.lock's packages), once per uv.lock, and kept for later
sessions (~/.cache/leanops/venvs/<hash>): 5 s to build here with the cache warm, nothing when kept.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tomllib
import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest

from leanops import datasets, features, registry
from leanops.spec import load_spec
from support import spec_copy, stop_process_group, wait_for

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]

# What the MLmodel's pip requirements name (leanops.tracking), and nothing of ours.
SERVING_PACKAGES = ("mlflow", "scikit-learn", "xgboost", "pandas", "numpy", "skops")
VENVS = Path.home() / ".cache" / "leanops" / "venvs"


def uv() -> str:
    found = Path(sys.executable).parent / "uv"
    return str(found) if found.exists() else shutil.which("uv") or pytest.fail("uv is needed to build the serving venv")


def lock_closure(lock: dict, roots: tuple[str, ...]) -> set[str]:
    """The packages of uv.lock that ``roots`` need, transitively (every marker kept: the installer evaluates them)."""
    packages = {p["name"]: p for p in lock["package"]}
    needed: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name not in needed:
            needed.add(name)
            todo += [d["name"] for d in packages[name].get("dependencies", [])]
    return needed


def serving_venv() -> Path:
    """A venv with SERVING_PACKAGES and what they need, at uv.lock's versions, and not leanops: uv exports
    that part of the lock (wheel URLs and hashes) and installs it offline from its cache (nothing is
    downloaded). Built under a lock (another session may build it too) and kept while uv.lock holds."""
    lock_text = (ROOT / "uv.lock").read_bytes()
    key = hashlib.sha256(lock_text + sys.version.encode() + " ".join(SERVING_PACKAGES).encode()).hexdigest()[:16]
    venv = VENVS / key
    VENVS.mkdir(parents=True, exist_ok=True)
    with (VENVS / f"{key}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (venv / "complete").exists():
            shutil.rmtree(venv, ignore_errors=True)
            lock_data = tomllib.loads(lock_text.decode())
            needed = lock_closure(lock_data, SERVING_PACKAGES)
            pylock = VENVS / f"pylock.{key}.toml"
            left_out = [arg for p in lock_data["package"] if p["name"] not in needed | {"leanops"} for arg in ("--no-emit-package", p["name"])]
            env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
            subprocess.run([uv(), "export", "--quiet", "--frozen", "--no-emit-project", "--format", "pylock.toml",
                            "-o", str(pylock), *left_out], cwd=ROOT, check=True, env=env, timeout=120)
            subprocess.run([uv(), "venv", "--quiet", "--python", sys.executable, str(venv)], check=True, env=env, timeout=300)
            subprocess.run([uv(), "pip", "install", "--quiet", "--offline", "--python", str(venv / "bin" / "python"),
                            "-r", str(pylock)], check=True, env=env, timeout=900)
            (venv / "complete").write_text(f"{len(needed)} packages of uv.lock: {', '.join(sorted(needed))}\n")
    return venv


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def champion(mlflow_server, tmp_path_factory):
    from e2e.test_serving import train_version

    name = f"artifact-{uuid.uuid4().hex[:8]}"
    spec = load_spec(spec_copy(tmp_path_factory.mktemp("artifact"), name))
    version = train_version(spec, seed=31, params={"n_estimators": 30, "max_depth": 3})
    registry.set_alias(name, registry.CHAMPION, version)
    return spec


def served_rows(spec, n: int = 50):
    """July flights the model never saw, as a JSON client sends them: numbers as doubles, the time as ISO text."""
    rows = datasets.flights_sample([7], rows_per_month=n, seed=9)[features.model_input_columns(spec)].dropna()
    rows = rows.astype({c: "float64" for c in spec.numeric_features if c in rows})
    return rows.assign(time_hour=rows["time_hour"].map(lambda t: t.isoformat())).reset_index(drop=True)


def test_mlflow_models_serve_in_a_venv_without_leanops_answers_as_pyfunc_does(champion, settings, tmp_path):
    import mlflow.pyfunc

    venv = serving_venv()
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", MLFLOW_TRACKING_URI=settings.resolved_mlflow_tracking_uri)
    no_leanops = subprocess.run([str(venv / "bin" / "python"), "-c", "import leanops"], cwd=tmp_path, env=env,
                                capture_output=True, text=True)
    assert "No module named 'leanops'" in no_leanops.stderr

    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("ab") as out:
        server = subprocess.Popen(  # noqa: S603 - MLflow's own CLI from the venv
            [str(venv / "bin" / "mlflow"), "models", "serve", "-m", f"models:/{champion.name}@champion",
             "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)],
            cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        def ready():
            assert server.poll() is None, log.read_text()[-4000:]
            try:
                return httpx.get(f"http://127.0.0.1:{port}/ping", timeout=5).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(ready, "mlflow models serve to answer /ping", deadline=300, interval=0.5)
        rows = served_rows(champion)
        # Python floats, not pandas' to_json (10 significant digits): the server must see the very same numbers.
        body = json.dumps({"dataframe_split": rows.to_dict(orient="split", index=False)})
        answer = httpx.post(f"http://127.0.0.1:{port}/invocations", content=body, timeout=60,
                            headers={"content-type": "application/json"})
    finally:
        stop_process_group(server, timeout=20)

    assert answer.status_code == 200, answer.text[:2000]
    served = np.asarray(answer.json()["predictions"], dtype=float)
    in_project = mlflow.pyfunc.load_model(f"models:/{champion.name}@champion")
    assert served.shape == (len(rows), 2) and len(rows) > 40
    assert np.array_equal(served, np.asarray(in_project.predict(rows), dtype=float))
    # What the two columns mean travels with the model (label encoding lives in leanops, not in the artifact).
    assert in_project.metadata.metadata["classes"] == ["negative", "positive"]
    assert in_project.metadata.metadata["positive_means"] == "dep_delay > 15"
