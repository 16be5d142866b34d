"""prefect.yaml against the code: every entrypoint imports, every parameter set validates, and every
trigger template finds its field in the payload our emitters send (a missing field creates no run:
the only trace is a prefect.automation.action.failed event). No server needed."""

from __future__ import annotations

import re
from fnmatch import fnmatch
from pathlib import Path

import pytest
import yaml

from leanops import events
from support import sample_lifecycle_events

ROOT = Path(__file__).resolve().parent.parent
DEPLOYMENTS = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]
TRIGGERS = [(d, t) for d in DEPLOYMENTS for t in d.get("triggers", [])]
PAYLOAD_FIELD = re.compile(r"event\.payload\.(\w+)")


# Full names as `prefect deployment run '<flow>/<deployment>'` takes them (the README and issue 5 use these).
EXPECTED = {
    "schedule/every-5-minutes", "retrain/on-schedule", "retrain/on-drift", "drift-monitor/on-new-batch",
    "promote/on-new-challenger", "rollback/manual", "rollback/on-degraded", "reconcile/hourly", "score/on-new-batch",
}
MODELS = {path.stem for path in (ROOT / "specs").glob("*.yaml")}


def ident(deployment: dict) -> str:
    return f"{deployment['entrypoint']}:{deployment['name']}"


def load_flow(deployment: dict):
    from prefect.flows import load_flow_from_entrypoint

    path, name = deployment["entrypoint"].split(":")
    return load_flow_from_entrypoint(f"{ROOT / path}:{name}")


def render(parameters: dict, event: events.LifecycleEvent) -> dict:
    """Trigger parameters rendered the way the server's run-deployment action renders them."""
    import copy

    from prefect.server.events.actions import RunDeployment
    from prefect.server.events.schemas.events import ReceivedEvent
    from prefect.utilities.schema_tools.hydration import HydrationContext, hydrate

    from leanops.bridge import event_document

    received = ReceivedEvent.model_validate(event_document(event))
    parameters = copy.deepcopy(parameters)
    RunDeployment._upgrade_v1_templates(parameters)
    return hydrate(parameters, HydrationContext(raise_on_error=True, render_jinja=True, jinja_context={"event": received}))


def test_the_deployments_are_the_documented_ones():
    names = [f"{load_flow(d).name}/{d['name']}" for d in DEPLOYMENTS]
    assert sorted(names) == sorted(EXPECTED)


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=ident)
def test_entrypoint_imports_and_its_parameters_validate(deployment):
    flow = load_flow(deployment)
    # The model a run serves is given when it starts (the trigger, the scheduler or the caller names it).
    given = {"spec": "any-model"} if "spec" in flow.parameters.required else {}

    flow.validate_parameters({**given, **(deployment.get("parameters") or {})})
    assert deployment["work_pool"]["name"] == "leanops-pool"


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=ident)
def test_no_deployment_and_no_flow_parameter_names_a_model(deployment):
    """Every deployment serves every spec: the model comes from the event, the scheduler or the caller."""
    import inspect

    flow = load_flow(deployment)
    defaults = {
        name: p.default for name, p in inspect.signature(flow.fn).parameters.items() if p.default is not inspect.Parameter.empty
    }
    named = {k: v for k, v in {**defaults, **(deployment.get("parameters") or {})}.items() if str(v) in MODELS}
    assert not named, f"{ident(deployment)} defaults to a model: {named}"
    assert "schedules" not in deployment or deployment["entrypoint"] != "flows/retrain.py:retrain", "one scheduler for all models"


BY_HAND = [d for d in DEPLOYMENTS if not d.get("triggers") and d["entrypoint"] not in ("flows/schedule.py:schedule", "flows/reconcile.py:reconcile")]


@pytest.mark.parametrize("deployment", BY_HAND, ids=ident)
def test_a_run_by_hand_without_a_spec_is_refused_naming_the_parameter(deployment):
    from prefect.exceptions import ParameterTypeError

    flow = load_flow(deployment)

    with pytest.raises(ParameterTypeError, match="spec"):
        flow.validate_parameters(deployment.get("parameters") or {})


@pytest.mark.parametrize(("entrypoint", "parameter"), [("flows/promote.py:promote", "version"), ("flows/rollback.py:rollback", "to_version")])
@pytest.mark.parametrize("value", [6, "6", "challenger"])
def test_a_version_parameter_takes_a_number_as_well_as_text(entrypoint, parameter, value):
    """`prefect deployment run 'promote/on-new-challenger' --param version=6` sends the number 6: the
    deployment's parameter schema (checked by the CLI and the server) must accept it."""
    from prefect.utilities.callables import parameter_schema
    from prefect.utilities.schema_tools import validate

    flow = load_flow({"entrypoint": entrypoint})
    schema = parameter_schema(flow).model_dump_for_openapi()

    validate({"spec": "any-model", parameter: value}, schema, raise_on_error=True)
    assert flow.validate_parameters({"spec": "any-model", parameter: value})[parameter] == value


@pytest.mark.parametrize(("deployment", "trigger"), TRIGGERS, ids=[ident(d) for d, _ in TRIGGERS])
def test_trigger_templates_read_only_fields_our_events_carry(deployment, trigger):
    samples = sample_lifecycle_events()
    assert trigger["expect"], "a trigger without expected events never fires"
    for name in trigger["expect"]:
        assert name in events.ALL_EVENTS, f"{name} is not a leanops event"
        event = samples[name]
        assert fnmatch(event.resource_id, trigger["match"]["prefect.resource.id"])
        templates = " ".join(str(v) for v in trigger.get("parameters", {}).values())
        missing = set(PAYLOAD_FIELD.findall(templates)) - set(event.payload)
        assert not missing, f"{ident(deployment)} reads {missing} that {name} does not carry"


@pytest.mark.parametrize(("deployment", "trigger"), TRIGGERS, ids=[ident(d) for d, _ in TRIGGERS])
def test_rendered_trigger_parameters_validate_against_the_flow(deployment, trigger):
    flow = load_flow(deployment)
    for name in trigger["expect"]:
        event = sample_lifecycle_events()[name]
        rendered = render(trigger.get("parameters", {}), event)
        flow.validate_parameters({**(deployment.get("parameters") or {}), **rendered})


def test_a_landed_key_with_spaces_and_unicode_renders_verbatim():
    [(deployment, trigger)] = [(d, t) for d, t in TRIGGERS if events.BATCH_LANDED in t["expect"]]
    event = sample_lifecycle_events()[events.BATCH_LANDED]

    rendered = render(trigger["parameters"], event)

    assert rendered == {"bucket": "leanops", "key": "incoming/flights-delay/2013 07 été.parquet", "version_id": "v1"}


def test_a_missing_payload_field_fails_or_renders_empty():
    """Why the field check above matters: a lone `{{ field }}` that is absent makes the server refuse the
    whole action (no run, only prefect.automation.action.failed); inside text it silently renders empty."""
    from prefect.utilities.schema_tools.hydration import InvalidJinja

    event = sample_lifecycle_events()[events.MODEL_REGISTERED]
    with pytest.raises(InvalidJinja):
        render({"spec": "{{ event.payload.no_such_field }}"}, event)
    assert render({"reason": "degraded on {{ event.payload.no_such_field }}"}, event) == {"reason": "degraded on "}


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=ident)
def test_every_deployment_starts_runs_through_the_fork_server_command(deployment):
    """The command must be a module the worker's Python finds from any directory (the worker runs it
    in a temporary one) and that falls back to `python -m prefect.engine` by itself."""
    import importlib.util

    argv = deployment["work_pool"]["job_variables"]["command"].split()
    assert argv[:2] == ["python", "-m"]
    spec = importlib.util.find_spec(argv[2])
    assert spec is not None and spec.origin == str(ROOT / "deployments" / "engine_command.py")
