"""The team's GitHub workflows, parse-checked (no GitHub here): valid against the workflow JSON schema
kept in tests/schemas/; `test` runs the README's test command on every push, exactly as .ci/run does;
`production-e2e` runs the production-profile tests on a schedule with PostgreSQL and Redis service
containers."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from datetime import datetime, timezone
from pathlib import Path

import jsonschema
import pytest
import yaml
from cronsim import CronSim

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
SCHEMA = Path(__file__).resolve().parent / "schemas" / "github-workflows.json"


def load(name: str) -> dict:
    document = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML 1.1 reads the key `on` as True; GitHub reads it as "on".
    if True in document:
        document["on"] = document.pop(True)
    return document


def readme_test_command() -> str:
    """The command the README gives for the tests: the line that says it is what CI runs."""
    lines = [line for line in (ROOT / "README.md").read_text().splitlines() if "what CI runs" in line]
    assert len(lines) == 1, f"README.md should name its test command once, on a line saying it is what CI runs: {lines}"
    command = lines[0].split("#", 1)[0].strip()
    assert command, lines[0]
    return command


@pytest.mark.parametrize("name", ["test.yml", "production-e2e.yml"])
def test_workflow_is_valid_against_the_schema(name):
    schema = json.loads(SCHEMA.read_text())
    errors = list(jsonschema.Draft7Validator(schema).iter_errors(load(name)))
    assert not errors, "\n".join(f"{e.json_path}: {e.message[:300]}" for e in errors)
    assert load(name)["permissions"] == {"contents": "read"}


def test_every_workflow_is_checked_here():
    assert sorted(p.name for p in WORKFLOWS.iterdir()) == ["production-e2e.yml", "test.yml"]


def run_steps(job: dict) -> list[str]:
    return [step["run"] for step in job["steps"] if "run" in step]


def assert_services(job: dict) -> None:
    services = job["services"]
    assert set(services) == {"postgres", "redis"}
    assert services["postgres"]["image"].startswith("postgres:") and services["postgres"]["env"]["POSTGRES_HOST_AUTH_METHOD"] == "trust"
    assert services["postgres"]["ports"] == ["127.0.0.1:5432:5432"] and services["redis"]["ports"] == ["127.0.0.1:6379:6379"]
    for service in services.values():
        assert "--health-cmd" in service["options"], "steps must not start before the service answers"


def test_the_push_workflow_runs_exactly_the_readme_test_command():
    command = readme_test_command()
    workflow = load("test.yml")
    assert workflow["on"] == {"push": None}, "every push, every branch"
    assert list(workflow["jobs"]) == ["test"]
    job = workflow["jobs"]["test"]
    assert "needs" not in job and "if" not in job
    assert run_steps(job) == [command]
    uses = [step["uses"].split("@")[0] for step in job["steps"] if "uses" in step]
    assert uses == ["actions/checkout", "actions/setup-python"]
    python = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/setup-python"))["with"]["python-version"]
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == f">={python}", "CI runs the oldest Python the project supports"
    assert_services(job)
    # .ci/run, the CI that runs here, is the same command.
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert ci_lines[-1] == command


def test_the_scheduled_workflow_runs_the_production_profile_tests_with_postgres_and_redis():
    workflow = load("production-e2e.yml")
    assert set(workflow["on"]) == {"schedule", "workflow_dispatch"}
    (schedule,) = workflow["on"]["schedule"]
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    runs = CronSim(schedule["cron"], start)
    first, second = next(runs), next(runs)
    assert (second - first).total_seconds() == 24 * 3600, "once a day"
    (name,) = workflow["jobs"]
    job = workflow["jobs"][name]
    assert_services(job)
    steps = run_steps(job)
    assert steps[0] == "make setup"
    argv = shlex.split(steps[-1])
    assert argv[:3] == [".venv/bin/python", "-m", "pytest"]
    marker = argv[argv.index("-m", 3) + 1]
    markers = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["markers"]
    assert any(re.match(rf"{re.escape(marker)}\s*:", m) for m in markers), f"pytest marker {marker!r} is not registered"
    assert workflow["jobs"][name]["timeout-minutes"] <= 60
