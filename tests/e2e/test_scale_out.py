"""Prefect on several machines: a server on PostgreSQL and two process workers on one work pool.
Two retrains of two different model specs run at the same time, each on its own worker."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import yaml

from leanops import datasets, registry, storage
from support import prefect_request, spec_copy

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
POOL = "leanops-scale"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def _admin(sql: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(host="127.0.0.1", port=5432, user="postgres", database="postgres")
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@pytest.fixture(scope="module")
def postgres_prefect(settings, tmp_path_factory):
    """A second Prefect server, on its own PostgreSQL database (created and dropped here)."""
    from infra import services

    database = f"leanops_scale_{uuid.uuid4().hex[:8]}"
    asyncio.run(_admin(f'CREATE DATABASE "{database}"'))
    home = tmp_path_factory.mktemp("pg-prefect")
    port = _free_port()
    server = dataclasses.replace(
        services.prefect_server(home, settings.host, port, f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}"),
        name="prefect-server-postgres",
    )
    services.start(server, home)
    api = f"http://{settings.host}:{port}/api"
    yield {"api": api, "home": home}
    services.stop(server, home)
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))


def _prefect(args: list[str], api: str, home: Path) -> subprocess.CompletedProcess:
    from infra import services

    env = {**os.environ, **services.prefect_env(home, api)}
    return subprocess.run(
        [str(services.BIN / "prefect"), "--no-prompt", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def test_two_workers_each_run_one_of_two_concurrent_retrains(postgres_prefect, mlflow_server, settings, tmp_path):
    from infra import services
    from infra.stack import child_env

    api, home = postgres_prefect["api"], postgres_prefect["home"]
    names = [f"scale-a-{uuid.uuid4().hex[:6]}", f"scale-b-{uuid.uuid4().hex[:6]}"]
    batch = tmp_path / "flights-h1.parquet"
    storage.write_table(datasets.flights_sample(range(1, 7), rows_per_month=600, seed=7), str(batch))
    deployments = []
    for name in names:
        spec_path = spec_copy(tmp_path, name, retrain_window__prefix=None)
        deployments.append({
            "name": name,
            "entrypoint": "flows/retrain.py:retrain",
            "parameters": {"spec": str(spec_path), "batch_uri": str(batch)},
            "work_pool": {"name": POOL},
        })
    project = tmp_path / "prefect.yaml"
    project.write_text(yaml.safe_dump({
        "name": "leanops-scale-test",
        "pull": [{"prefect.deployments.steps.set_working_directory": {"directory": str(ROOT)}}],
        "deployments": deployments,
    }))
    created = _prefect(["work-pool", "create", POOL, "--type", "process"], api, home)
    assert created.returncode == 0, created.stderr
    deployed = _prefect(["deploy", "--all", "--prefect-file", str(project)], api, home)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr

    workers = []
    for index in range(2):
        port = _free_port()
        base = services.prefect_worker(home, api, POOL, settings.host, port, child_env(settings))
        # One run at a time per worker: the second run must go to the other worker.
        workers.append(dataclasses.replace(base, name=f"scale-worker-{index}", argv=[*base.argv, "--limit", "1"]))
    for worker in workers:
        services.start(worker, home)
    try:
        run_ids = []
        for name in names:
            deployment = prefect_request("GET", f"{api}/deployments/name/retrain/{name}").json()
            run_ids.append(prefect_request("POST", f"{api}/deployments/{deployment['id']}/create_flow_run", json={}).json()["id"])
        deadline = time.monotonic() + 600
        runs = []
        while time.monotonic() < deadline:
            runs = [prefect_request("GET", f"{api}/flow_runs/{run_id}").json() for run_id in run_ids]
            if all(r["state_type"] in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"} for r in runs):
                break
            time.sleep(2)
        assert [r["state_type"] for r in runs] == ["COMPLETED", "COMPLETED"], [r["state"] for r in runs]
    finally:
        for worker in workers:
            services.stop(worker, home)

    logs = [worker.log_file(home).read_text(errors="replace") for worker in workers]
    # Both workers may try to submit the same run (the server aborts the loser, which logs the run id too):
    # a run ran where its own process printed its page, which only the winner's flow process does.
    ran_on = [[index for index, log in enumerate(logs) if f"/runs/flow-run/{run_id}" in log] for run_id in run_ids]
    assert sorted(sum(ran_on, [])) == [0, 1], ran_on  # each worker picked up exactly one of the runs
    first, second = runs
    assert first["start_time"] < second["end_time"] and second["start_time"] < first["end_time"], "the runs did not overlap"
    for name in names:
        assert registry.get_alias(name, registry.CHALLENGER) is not None
