"""Kubernetes files of infra/, checked without a cluster: every manifest under infra/k8s/ against the
Kubernetes JSON schema kept in tests/schemas/kubernetes/ (strict: an unknown field fails); the work
pool's base job template rendered the way Prefect's worker renders it and the resulting Job validated;
the worker chart's values, whose Kubernetes parts are validated against the same schema."""

from __future__ import annotations

import json
import shlex
from functools import lru_cache
from pathlib import Path

import jsonschema
import pytest
import yaml
from referencing import Registry, Resource

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "infra" / "k8s"
HELM_VALUES = ROOT / "infra" / "helm" / "prefect-worker-values.yaml"
TEMPLATE = K8S / "work-pool-base-job-template.json"
DEFINITIONS = Path(__file__).resolve().parent / "schemas" / "kubernetes" / "v1.33-strict-definitions.json"


@lru_cache(maxsize=1)
def definitions() -> dict:
    return json.loads(DEFINITIONS.read_text())


def validator(definition: str) -> jsonschema.Draft202012Validator:
    document = definitions()
    registry = Registry().with_resource(document["$id"], Resource.from_contents(document))
    return jsonschema.Draft202012Validator({"$ref": f"{document['$id']}#/$defs/{definition}"}, registry=registry)


def definition_for(api_version: str, kind: str) -> str:
    group, _, version = api_version.rpartition("/")
    for name, schema in definitions()["$defs"].items():
        for gvk in schema.get("x-kubernetes-group-version-kind", []):
            if (gvk["group"], gvk["version"], gvk["kind"]) == (group, version, kind):
                return name
    raise AssertionError(f"no schema for {api_version} {kind} in {DEFINITIONS.name}: vendor a newer one")


def errors(definition: str, document) -> list[str]:
    return [f"{e.json_path}: {e.message[:300]}" for e in validator(definition).iter_errors(document)]


def manifests() -> list[tuple[str, dict]]:
    found = []
    for path in sorted(K8S.glob("*.y*ml")):
        for index, document in enumerate(yaml.safe_load_all(path.read_text())):
            if document is not None:
                found.append((f"{path.name}#{index}", document))
    return found


@pytest.mark.parametrize("where,document", manifests(), ids=[w for w, _ in manifests()])
def test_manifest_is_valid_against_the_kubernetes_schema(where, document):
    assert not errors(definition_for(document["apiVersion"], document["kind"]), document), where


def test_the_schema_catches_a_misspelt_field():
    job = {"apiVersion": "batch/v1", "kind": "Job", "spec": {"template": {"spec": {"containers": [{"name": "x", "imagee": "y"}]}}}}
    assert any("imagee" in e for e in errors("io.k8s.api.batch.v1.Job", job))


# --- the work pool's base job template -------------------------------------------------------------------


def render(template: dict, values: dict) -> dict:
    """The job configuration a Kubernetes worker builds for a flow run from the pool's template."""
    from prefect.utilities.templating import apply_values

    variables = {name: spec["default"] for name, spec in template["variables"]["properties"].items() if "default" in spec}
    configuration = apply_values(template["job_configuration"], {**variables, **values})
    # What prefect-kubernetes' job configuration does next: a string command becomes the container's
    # args, and the run's environment (a mapping) is put before the template's own env list.
    container = configuration["job_manifest"]["spec"]["template"]["spec"]["containers"][0]
    if isinstance(container.get("args"), str):
        container["args"] = shlex.split(container["args"])
    container["env"] = [{"name": k, "value": v} for k, v in configuration.get("env", {}).items()] + container.get("env", [])
    configuration["job_manifest"]["metadata"]["labels"] = configuration.get("labels", {})
    return configuration


@pytest.fixture(scope="module")
def template() -> dict:
    return json.loads(TEMPLATE.read_text())


def test_base_job_template_variables_are_a_json_schema_covering_every_placeholder(template):
    from prefect.utilities.templating import find_placeholders

    jsonschema.Draft202012Validator.check_schema(template["variables"])
    placeholders = {p.name for p in find_placeholders(template["job_configuration"])}
    assert placeholders <= set(template["variables"]["properties"]), placeholders - set(template["variables"]["properties"])
    assert {"command", "env", "labels", "name", "namespace", "job_manifest"} <= set(template["job_configuration"])


def test_base_job_template_renders_a_valid_job_that_takes_secrets_from_a_secret(template):
    values = {
        "image": "registry.example/leanops@sha256:" + "0" * 64, "name": "retrain-abc",
        "command": "python -m deployments.engine_command", "env": {"PREFECT__FLOW_RUN_ID": "1234"},
        "labels": {"prefect.io/flow-run-id": "1234"},
    }
    jsonschema.validate({**values}, template["variables"])
    job = render(template, values)["job_manifest"]
    pod = job["spec"]["template"]["spec"]
    # prefect-kubernetes refuses a template without parallelism and completions of 1 in the pod spec
    # (its _get_base_job_manifest), where they are no PodSpec fields: Kubernetes drops them on create.
    assert (pod.pop("parallelism"), pod.pop("completions")) == (1, 1)
    assert not errors("io.k8s.api.batch.v1.Job", job)
    (container,) = pod["containers"]
    assert container["args"] == ["python", "-m", "deployments.engine_command"]
    assert container["image"] == values["image"] and job["metadata"]["generateName"] == "retrain-abc-"
    assert job["spec"]["ttlSecondsAfterFinished"] == 3600 and isinstance(pod["serviceAccountName"], str)
    # Credentials only by reference to a Secret; no value in the template.
    for entry in container["env"]:
        if any(word in entry["name"] for word in ("PASSWORD", "AUTH_STRING", "TOKEN", "STORAGE")):
            assert "value" not in entry and entry["valueFrom"]["secretKeyRef"]["name"] == "leanops-secrets", entry["name"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False and pod["securityContext"]["runAsNonRoot"] is True


def test_base_job_template_refuses_a_run_without_an_image(template):
    with pytest.raises(jsonschema.ValidationError, match="image"):
        jsonschema.validate({"name": "x"}, template["variables"])


# --- the worker chart's values ---------------------------------------------------------------------------


def test_worker_chart_values_point_at_the_pool_with_basic_auth_from_a_secret(template):
    values = yaml.safe_load(HELM_VALUES.read_text())
    worker = values["worker"]
    assert worker["apiConfig"] == "selfHostedServer"
    auth = worker["selfHostedServerApiConfig"]["basicAuth"]
    assert auth["enabled"] is True and auth["existingSecret"] and "authString" not in auth
    assert worker["config"]["type"] == "kubernetes" and worker["config"]["workPool"] == "leanops-k8s"
    assert worker["config"]["installPolicy"] == "never"
    # The template file is the one source: the values leave it to --set-file, as the header says.
    assert worker["config"]["baseJobTemplate"]["configuration"] is None
    assert "--set-file worker.config.baseJobTemplate.configuration=infra/k8s/work-pool-base-job-template.json" in HELM_VALUES.read_text()
    namespace = next(d for _, d in manifests() if d["kind"] == "Namespace")["metadata"]["name"]
    assert worker["config"]["jobNamespace"] == values["role"]["namespace"] == namespace
    assert template["variables"]["properties"]["namespace"]["default"] == namespace
    configmap = next(d for _, d in manifests() if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "leanops-settings")
    assert configmap["data"]["LEANOPS_WORK_POOL_NAME"] == worker["config"]["workPool"]
    # Its Kubernetes parts, against Kubernetes' own schema.
    assert not errors("io.k8s.api.core.v1.ResourceRequirements", worker["resources"])
    assert not errors("io.k8s.api.core.v1.PodSecurityContext", worker["podSecurityContext"])
    assert not errors("io.k8s.api.core.v1.SecurityContext", worker["containerSecurityContext"])
