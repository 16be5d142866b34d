"""The Lambda packaging of the endpoint, checked without building anything: the Dockerfile (parsed with
dockerfile-parse), its requirements against uv.lock, and the Terraform of the function (python-hcl2).
The handler itself is invoked with real HTTP API events in tests/e2e/test_serving_canary.py."""

from __future__ import annotations

import importlib
import json
import sys
import tomllib
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, distribution, packages_distributions
from pathlib import Path

from dockerfile_parse import DockerfileParser
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
LAMBDA = ROOT / "serving" / "lambda"


def requirements() -> list[Requirement]:
    lines = (LAMBDA / "requirements.txt").read_text().splitlines()
    return [Requirement(line) for line in lines if line.strip() and not line.startswith("#")]


@lru_cache(maxsize=1)
def installed_by_requirements() -> frozenset[str]:
    """Every distribution pip installs from the image's requirements: them and their dependencies,
    markers evaluated for this interpreter (the image's Python and platform: 3.11 on Linux x86_64)."""
    todo = [(r, ("",)) for r in requirements()]
    seen: set[str] = set()
    while todo:
        requirement, extras = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = distribution(requirement.name).requires or []
        except PackageNotFoundError:
            continue
        wanted = ("", *requirement.extras)
        for line in requires:
            dependency = Requirement(line)
            if dependency.marker is None or any(dependency.marker.evaluate({"extra": e}) for e in wanted):
                todo.append((dependency, tuple(dependency.extras)))
    return frozenset(seen)


def absent_from_image() -> list[str]:
    """Top-level modules of this venv that no distribution of the image provides."""
    own = {"leanops", "serving", "_distutils_hack"}  # the project's code is copied in; the hook is this venv's
    return sorted(
        module for module, dists in packages_distributions().items()
        if module not in own and not {canonicalize_name(d) for d in dists} & installed_by_requirements()
    )


# Run first in an interpreter: the image's package set, simulated in this venv by finding no other
# library, so an optional import (``try: import multipart``, ``find_spec("sqlalchemy")``) takes its
# fallback as it would in the image, and a real need fails with ModuleNotFoundError.
AS_IN_THE_IMAGE = """
import json as _json, os as _os, sys as _sys
_ABSENT = frozenset(_json.loads(_os.environ["LEANOPS_TEST_ABSENT_MODULES"]))
class _AsInTheImage:
    def __init__(self, finder):
        self._finder = finder
    def find_spec(self, name, path=None, target=None):
        return None if name.partition(".")[0] in _ABSENT else self._finder.find_spec(name, path, target)
    def __getattr__(self, attribute):
        return getattr(self._finder, attribute)
_sys.meta_path[:] = [_AsInTheImage(f) if hasattr(f, "find_spec") else f for f in _sys.meta_path]
"""


def image_env() -> dict[str, str]:
    return {"LEANOPS_TEST_ABSENT_MODULES": json.dumps(absent_from_image())}


def test_the_image_is_aws_lambda_python_with_the_handler_and_the_code_it_needs():
    parser = DockerfileParser(path=str(LAMBDA / "Dockerfile"))
    image, _, tag = parser.baseimage.partition(":")
    assert image == "public.ecr.aws/lambda/python"
    assert tag == f"{sys.version_info.major}.{sys.version_info.minor}"  # the Python the tests ran on
    [cmd] = [i for i in parser.structure if i["instruction"] == "CMD"]
    [handler] = json.loads(cmd["value"])
    module, function = handler.rsplit(".", 1)
    assert callable(getattr(importlib.import_module(module), function))
    copies = [i["value"].split() for i in parser.structure if i["instruction"] == "COPY"]
    sources = {c[0].rstrip("/") for c in copies}
    assert {"leanops", "serving", "specs", "serving/lambda/requirements.txt"} <= sources
    assert all((ROOT / s).exists() for s in sources)
    assert all(c[1].startswith("${LAMBDA_TASK_ROOT}") for c in copies)
    [install] = [i["value"] for i in parser.structure if i["instruction"] == "RUN"]
    assert "pip install" in install and "requirements.txt" in install
    env = parser.envs
    assert env["LEANOPS_SERVING_FOLLOW_EVENTS"] == "false" and env["LEANOPS_HOME"].startswith("/tmp")


def test_the_image_pins_exactly_the_locked_versions():
    locked = {canonicalize_name(p["name"]): p["version"] for p in tomllib.loads((ROOT / "uv.lock").read_text())["package"]}
    pins = {canonicalize_name(r.name): str(r.specifier) for r in requirements()}
    assert "mangum" in pins and "prefect" not in pins and "evidently" not in pins
    drifted = {name: (spec, locked.get(name)) for name, spec in pins.items() if spec != f"=={locked.get(name)}"}
    assert not drifted, f"serving/lambda/requirements.txt differs from uv.lock: {drifted}"


def test_the_app_builds_with_only_what_the_image_installs(tmp_path):
    import os
    import subprocess

    probe = AS_IN_THE_IMAGE + "import serving.aws_lambda, mangum\nfrom serving.app import create_app\ncreate_app(follow_events=False)\nprint('built')"
    env = {**os.environ, **image_env(), "LEANOPS_SPECS_DIR": str(ROOT / "specs")}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, env=env)  # noqa: S603
    assert done.returncode == 0 and done.stdout.strip() == "built", done.stderr[-3000:]
    assert {"prefect", "evidently", "optuna", "slack_sdk"} <= set(absent_from_image())


# --- infra/terraform/serving_lambda.tf ---------------------------------------------------------------------


def terraform() -> dict[str, dict]:
    """{"resource" | "data" | "variable": {type or name: ...}} of every .tf file (names are unique across files)."""
    import hcl2

    options = hcl2.SerializationOptions(strip_string_quotes=True, explicit_blocks=False, with_comments=False)
    merged: dict[str, dict] = {"resource": {}, "data": {}, "variable": {}}
    for path in sorted((ROOT / "infra" / "terraform").glob("*.tf")):
        with path.open() as handle:
            parsed = hcl2.load(handle, serialization_options=options)
        for entry in parsed.get("variable", []):
            merged["variable"].update(entry)
        for kind in ("resource", "data"):
            for entry in parsed.get(kind, []):
                for block_type, named in entry.items():
                    merged[kind].setdefault(block_type, {}).update(named)
    return merged


def test_the_function_runs_the_image_behind_an_http_api_with_payload_2():
    tf = terraform()
    resources = tf["resource"]
    function = resources["aws_lambda_function"]["serving"]
    assert function["package_type"] == "Image" and function["image_uri"] == "${var.serving_image_uri}"
    integration = resources["aws_apigatewayv2_integration"]["serving"]
    assert integration["integration_type"] == "AWS_PROXY" and integration["payload_format_version"] == "2.0"
    assert integration["integration_uri"] == "${aws_lambda_function.serving.invoke_arn}"
    assert resources["aws_apigatewayv2_api"]["serving"]["protocol_type"] == "HTTP"
    route = resources["aws_apigatewayv2_route"]["serving"]
    assert route["target"] == "integrations/${aws_apigatewayv2_integration.serving.id}"
    assert tf["variable"]["serving_authorization_type"]["default"] == "AWS_IAM"
    permission = resources["aws_lambda_permission"]["serving_api"]
    assert permission["principal"] == "apigateway.amazonaws.com" and permission["action"] == "lambda:InvokeFunction"
    assert permission["source_arn"].startswith("${aws_apigatewayv2_api.serving.execution_arn}")
    # Names this file takes from the rest of infra/terraform (prod-infra's files) exist there.
    assert "data" in resources["aws_s3_bucket"] and "worker" in resources["aws_iam_role"]
    assert {"region", "incoming_prefix"} <= set(tf["variable"])


def test_the_function_may_only_write_the_prediction_log_and_its_live_summaries():
    documents = terraform()["data"]["aws_iam_policy_document"]
    statements = documents["serving"]["statement"]
    s3 = [s for s in statements if any(a.startswith("s3:") for a in s["actions"])]
    assert {a for s in s3 for a in s["actions"]} == {"s3:PutObject"}
    resources = " ".join(r for s in s3 for r in s["resources"])
    assert "/_predictions/sample/*" in resources and "prediction_log_prefix" in resources and "serving_live_prefix" in resources
    worker = {a for s in documents["worker_serving"]["statement"] for a in s["actions"]}
    assert worker == {"s3:GetObject", "s3:DeleteObject", "s3:ListBucket"}


def test_every_setting_the_function_and_the_image_set_is_a_leanops_setting():
    from leanops.settings import Settings

    fields = {f"LEANOPS_{name.upper()}" for name in Settings.model_fields}
    [environment] = terraform()["resource"]["aws_lambda_function"]["serving"]["environment"]
    function_env = environment["variables"]
    image_env = DockerfileParser(path=str(LAMBDA / "Dockerfile")).envs
    named = {k for k in (*function_env, *image_env) if k.startswith("LEANOPS_")}
    assert named and named <= fields, f"not settings of leanops.settings: {sorted(named - fields)}"
