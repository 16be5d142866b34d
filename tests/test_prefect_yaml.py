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
    "retrain/weekly", "retrain/on-drift", "drift-monitor/on-new-batch", "promote/on-new-challenger",
    "rollback/manual", "rollback/on-degraded", "reconcile/hourly",
}


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

    flow.validate_parameters(deployment.get("parameters") or {})
    assert deployment["work_pool"]["name"] == "leanops-pool"


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
