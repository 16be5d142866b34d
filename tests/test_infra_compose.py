"""infra/compose.yaml, checked without a container engine: it is valid against the compose-spec JSON
schema kept in tests/schemas/; every long-running service has a health check and keeps its state in a
volume; no secret is written in it; and every command that runs leanops, Prefect, MLflow or moto is one
the native stack (infra.stack) runs, flag for flag."""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
COMPOSE = INFRA / "compose.yaml"
SCHEMAS = Path(__file__).resolve().parent / "schemas"

# Flags only a container needs, with the reason; removed from a compose command before comparing it.
CONTAINER_ONLY_FLAGS = {
    # Clients reach MLflow as http://mlflow:5050 from other containers; natively it answers on 127.0.0.1.
    "mlflow": {"--allowed-hosts"},
}
# Services of third-party images whose commands no native process mirrors (PostgreSQL and Redis run
# natively as the machine's own servers; Prometheus and Grafana have no native counterpart).
THIRD_PARTY = {"postgres", "redis", "prometheus", "grafana"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_file_is_valid_against_the_compose_spec(compose):
    schema = json.loads((SCHEMAS / "compose-spec.json").read_text())
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(compose), key=lambda e: e.json_path)
    assert not errors, "\n".join(f"{e.json_path}: {e.message[:300]}" for e in errors)


def test_the_production_layout_is_complete(compose):
    services = compose["services"]
    expected = {
        "postgres", "redis", "s3", "s3-setup", "prefect-migrate", "prefect-api-a", "prefect-api-b", "prefect-services",
        "prefect-setup", "mlflow", "worker-a", "fork-server-a", "s3-bridge", "serving", "prometheus", "grafana",
    }
    assert expected <= set(services)
    # Migrations once, before any API process or the services start.
    for name in ("prefect-api-a", "prefect-api-b", "prefect-services"):
        assert services[name]["depends_on"]["prefect-migrate"]["condition"] == "service_completed_successfully", name
    # The work pool (what a team deploys to) only once the triggers listen for automation changes.
    assert services["prefect-services"]["healthcheck"]["test"] == ["CMD", "python", "-m", "infra.triggers_ready"]
    assert services["prefect-setup"]["depends_on"]["prefect-services"]["condition"] == "service_healthy"
    # Prefect's messaging, cache, ordering and leases on Redis, as the scaling guide lays out.
    env = services["prefect-api-a"]["environment"]
    assert env["PREFECT_MESSAGING_BROKER"] == env["PREFECT_MESSAGING_CACHE"] == "prefect_redis.messaging"
    assert env["PREFECT_SERVER_EVENTS_CAUSAL_ORDERING"] == "prefect_redis.ordering"
    assert env["PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE"] == "prefect_redis.lease_storage"
    assert env["PREFECT_API_DATABASE_MIGRATE_ON_START"] == "false"
    # The fork server shares the worker's PID namespace, socket folder and /tmp.
    fork, worker = services["fork-server-a"], services["worker-a"]
    assert fork["pid"] == "service:worker-a"
    assert {v.split(":")[0] for v in worker["volumes"]} == {v.split(":")[0] for v in fork["volumes"]}
    assert fork["user"] == worker["user"] and worker["user"].split(":")[0] != "0"
    # leanops and Prefect's own client talk to the same API process.
    for name, service in services.items():
        env = service.get("environment") or {}
        if "PREFECT_API_URL" in env and "build" in service and name not in {"prefect-migrate", "prefect-api-a", "prefect-api-b", "prefect-services"}:
            assert env.get("LEANOPS_PREFECT_API_URL") == env["PREFECT_API_URL"], name
    # Prometheus scrapes the endpoint that compose runs.
    prometheus = yaml.safe_load((INFRA / "prometheus" / "prometheus.yml").read_text())
    targets = [t for job in prometheus["scrape_configs"] for c in job["static_configs"] for t in c["targets"]]
    serving_port = services["serving"]["environment"]["LEANOPS_SERVING_PORT"]
    assert targets == [f"serving:{serving_port}"]


def test_long_running_services_have_health_checks_and_volumes(compose):
    services = compose["services"]
    declared_volumes = set(compose["volumes"])
    for name, service in services.items():
        one_shot = service.get("restart") == "no"
        if not one_shot:
            assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source.startswith("./") or source in declared_volumes, f"{name}: undeclared volume {source}"
            if source.startswith("./"):
                assert (INFRA / source).exists(), f"{name} mounts {source}, which is not in infra/"
    for stateful in ("postgres", "redis", "prometheus", "grafana"):
        assert any(v.split(":")[0] in declared_volumes for v in services[stateful]["volumes"]), stateful


# Names of values that are secrets themselves; any other value must not carry credentials (user:pw@).
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|AUTH_STRING|ACCESS_KEY|CONNECTION_URL|REDIS_MESSAGING_URL|DOCKET_URL|BACKEND_STORE_URI|OPTUNA_STORAGE|POSTGRES_URL")


def test_no_secret_is_written_in_the_compose_file(compose):
    for name, service in compose["services"].items():
        for key, value in (service.get("environment") or {}).items():
            text = str(value)
            assert not re.search(r"://[^/\s:@]+:[^/\s@]+@", text), f"{name}: {key} carries credentials"
            if SECRET_NAME.search(key):
                assert key.endswith("_FILE") and text.startswith("/run/secrets/"), f"{name}: {key} is set in compose.yaml"
        assert "POSTGRES_PASSWORD" not in (service.get("environment") or {}), name
    # Secret files and filled-in env files live where git never takes them.
    paths = [s["file"] for s in compose["secrets"].values()]
    paths += [f for s in compose["services"].values() for f in ([s["env_file"]] if isinstance(s.get("env_file"), str) else s.get("env_file", []))]
    ignored = subprocess.run(["git", "check-ignore", *paths], cwd=INFRA, capture_output=True, text=True, check=False).stdout.split()
    assert sorted(ignored) == sorted(paths)
    for env_file in {p for p in paths if p.startswith("env/")}:
        example = INFRA / f"{env_file}.example"
        assert example.exists(), f"{env_file} has no committed example"
        for line in example.read_text().splitlines():
            key, _, value = line.partition("=")
            if SECRET_NAME.search(key.strip()) and "SECRET" in value:
                assert value.split("#")[0].strip() == "", f"{example.name}: {key} has a value"


# --- the commands: each one the native stack runs ---------------------------------------------------------


def shape(argv: list[str]) -> tuple[str, tuple[str, ...], frozenset[str]]:
    """(program, subcommands, flags): what a command does, without the values that differ per host."""
    if argv[:2] == ["sh", "-c"]:
        argv = shlex.split(argv[2])
        argv = argv[1:] if argv[0] == "exec" else argv
    if argv[1:4] == ["-m", "infra.respawn", "--"]:
        # The native stack restarts its workers itself (infra/respawn.py); compose has `restart:` for that.
        argv = argv[4:]
    program, rest = Path(argv[0]).name, list(argv[1:])
    subcommands: list[str] = []
    if program.startswith("python") and rest[:1] in (["-m"], ["-c"]):
        subcommands, rest = rest[:2], rest[2:]
    while rest and not rest[0].startswith("-"):
        subcommands.append(rest.pop(0))
    return re.sub(r"^python3?(\.\d+)?$", "python", program), tuple(subcommands), frozenset(t for t in rest if t.startswith("-"))


def native_shapes(tmp_path: Path) -> set[tuple[str, tuple[str, ...], frozenset[str]]]:
    """Every command infra.stack starts, in both profiles, plus the one-off commands it runs."""
    from infra import stack
    from leanops.settings import Settings

    shapes = set()
    for profile in ("embedded", "production"):
        settings = Settings(home=tmp_path / "home", profile=profile)
        shapes |= {shape(service.argv) for service in stack.all_services(settings)}
    return shapes | one_off_shapes()


def one_off_shapes() -> set[tuple[str, tuple[str, ...], frozenset[str]]]:
    """Literal argv lists in infra/*.py that start a program (e.g. `prefect server database upgrade -y`)."""
    shapes = set()
    for path in INFRA.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.List) or not node.elts:
                continue
            first = [c.value for c in ast.walk(node.elts[0]) if isinstance(c, ast.Constant) and isinstance(c.value, str)]
            rest = [e.value for e in node.elts[1:] if isinstance(e, ast.Constant) and isinstance(e.value, str)]
            if first and len(rest) == len(node.elts) - 1:  # every argument literal: a fixed command
                shapes.add(shape([first[-1], *rest]))
    return shapes


def test_every_compose_command_is_one_the_native_stack_runs(compose, tmp_path):
    native = native_shapes(tmp_path)
    checked = []
    for name, service in compose["services"].items():
        if name in THIRD_PARTY:
            assert "build" not in service, f"{name} is listed as a third-party image"
            continue
        command = service["command"]
        program, subcommands, flags = shape(command)
        if (program, subcommands[:1]) == ("python", ("-c",)):
            assert_snippet_uses_the_stack(name, subcommands[1])
            checked.append(name)
            continue
        flags = flags - CONTAINER_ONLY_FLAGS.get(name, set())
        if (program, subcommands, flags) in native:
            checked.append(name)
            continue
        candidates = sorted(str(s) for s in native if s[0] == program)
        pytest.fail(f"{name}: {command} is not a command infra.stack runs; its commands for {program}:\n" + "\n".join(candidates))
    assert len(checked) == len(compose["services"]) - len(THIRD_PARTY)


def assert_snippet_uses_the_stack(name: str, code: str) -> None:
    """A `python -c` one-shot calls the stack's own functions (the ones `infra.stack up` calls)."""
    import importlib

    tree = ast.parse(code)
    imported = [(node.module, alias.name) for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for alias in node.names]
    assert imported, f"{name}: {code!r} imports nothing from the project"
    for module, attribute in imported:
        assert module.split(".")[0] in {"infra", "leanops"}, f"{name}: {module}"
        assert callable(getattr(importlib.import_module(module), attribute)), f"{name}: {module}.{attribute}"
    up_source = (INFRA / "stack.py").read_text().split("def up", 1)[1]
    for module, attribute in imported:
        if module == "infra.stack":
            assert re.search(rf"(?<![.\w]){attribute}\(", up_source), f"{name}: infra.stack up never calls {attribute}"
        elif module == "infra.production":
            assert f"production.{attribute}(" in up_source, f"{name}: infra.stack up never calls production.{attribute}"


def test_shape_keeps_flags_and_drops_values():
    assert shape(["/venv/bin/prefect", "server", "start", "--host", "0.0.0.0", "--port", "4200", "--no-services"]) == (
        "prefect", ("server", "start"), frozenset({"--host", "--port", "--no-services"}))
    assert shape(["sh", "-c", 'exec mlflow server --host "$H" --workers 1']) == ("mlflow", ("server",), frozenset({"--host", "--workers"}))
    assert shape(["/usr/bin/python3.11", "-m", "deployments.forkserver", "--socket", "s"]) == (
        "python", ("-m", "deployments.forkserver"), frozenset({"--socket"}))
    assert os.path.basename(COMPOSE) == "compose.yaml"


def test_grafana_is_provisioned_with_prometheus_and_every_dashboard(compose):
    grafana = INFRA / "grafana"
    (datasource,) = yaml.safe_load((grafana / "provisioning" / "datasources" / "prometheus.yaml").read_text())["datasources"]
    assert datasource["type"] == "prometheus" and datasource["url"] == "http://prometheus:9090" and datasource["isDefault"]
    (provider,) = yaml.safe_load((grafana / "provisioning" / "dashboards" / "leanops.yaml").read_text())["providers"]
    mounts = dict(v.split(":")[:2] for v in compose["services"]["grafana"]["volumes"])
    assert mounts["./grafana/dashboards"] == provider["options"]["path"]
    dashboards = sorted((grafana / "dashboards").glob("*.json"))
    assert dashboards, "no dashboard under infra/grafana/dashboards/"
    for path in dashboards:
        dashboard = json.loads(path.read_text())
        variables = {f"${{{v['name']}}}" for v in dashboard.get("templating", {}).get("list", [])
                     if v.get("type") == "datasource" and v.get("query") == "prometheus"}
        references = re.findall(r'"datasource":\s*\{[^}]*"uid":\s*"([^"]+)"', json.dumps(dashboard))
        assert references, f"{path.name} names no data source"
        assert set(references) <= {datasource["uid"], *variables}, f"{path.name}: data sources {set(references)}"
