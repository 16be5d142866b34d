"""infra/terraform, parsed with python-hcl2 (no Terraform, no AWS here): every .tf file parses; the data
bucket is versioned; ObjectCreated notifications of the incoming prefix go to a queue whose redrive
policy points at a dead-letter queue; every IAM policy that allows something names its actions one by
one and scopes them to a queue, a key prefix or a condition."""

from __future__ import annotations

import re
from pathlib import Path

import hcl2
import pytest

TERRAFORM = Path(__file__).resolve().parents[1] / "infra" / "terraform"
OPTIONS = hcl2.SerializationOptions(strip_string_quotes=True, explicit_blocks=False, with_comments=False)
REFERENCE = re.compile(r"^\$\{(aws_[a-z0-9_]+)\.([a-z0-9_]+)\.(arn|id|name|bucket)\}$")


def tf_files() -> list[Path]:
    return sorted(TERRAFORM.glob("*.tf"))


def parse(path: Path) -> dict:
    with path.open() as handle:
        return hcl2.load(handle, serialization_options=OPTIONS)


@pytest.fixture(scope="module")
def blocks() -> dict[str, dict[str, dict[str, dict]]]:
    """{"resource" | "data": {type: {name: body}}} over every .tf file; a name defined twice fails."""
    merged: dict[str, dict[str, dict[str, dict]]] = {"resource": {}, "data": {}}
    for path in tf_files():
        for kind in merged:
            for entry in parse(path).get(kind, []):
                for block_type, named in entry.items():
                    for name, body in named.items():
                        assert name not in merged[kind].setdefault(block_type, {}), f"{kind} {block_type}.{name} twice"
                        merged[kind][block_type][name] = body
    return merged


def only(mapping: dict, what: str):
    assert len(mapping) == 1, f"expected exactly one {what}, found {sorted(mapping)}"
    return next(iter(mapping.items()))


def referenced(expression: str, resources: dict, expected_type: str) -> str:
    """The resource name an interpolation like ${aws_sqs_queue.batches.arn} points at, checked to exist."""
    match = REFERENCE.match(str(expression).strip())
    assert match, f"{expression!r} is not a reference to a {expected_type}"
    block_type, name, _ = match.groups()
    assert block_type == expected_type, f"{expression!r} refers to a {block_type}, not a {expected_type}"
    assert name in resources.get(block_type, {}), f"{expression!r} refers to an undefined {block_type}"
    return name


def test_every_terraform_file_parses():
    files = tf_files()
    assert {"versions.tf", "variables.tf", "s3.tf", "sqs.tf", "iam.tf", "outputs.tf"} <= {p.name for p in files}
    for path in files:
        assert isinstance(parse(path), dict), path.name


def test_the_data_bucket_is_versioned_private_and_encrypted(blocks):
    resources = blocks["resource"]
    bucket, _ = only(resources["aws_s3_bucket"], "bucket")
    for kind in ("aws_s3_bucket_versioning", "aws_s3_bucket_public_access_block", "aws_s3_bucket_server_side_encryption_configuration"):
        _, body = only(resources[kind], kind)
        assert referenced(body["bucket"], resources, "aws_s3_bucket") == bucket
    _, versioning = only(resources["aws_s3_bucket_versioning"], "versioning")
    assert versioning["versioning_configuration"][0]["status"] == "Enabled"
    _, public = only(resources["aws_s3_bucket_public_access_block"], "public access block")
    assert all(public[flag] is True for flag in ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets"))


def test_object_created_notifications_go_to_a_queue_with_a_dead_letter_queue(blocks):
    resources = blocks["resource"]
    _, notification = only(resources["aws_s3_bucket_notification"], "bucket notification")
    (queue_rule,) = notification["queue"]
    assert queue_rule["events"] == ["s3:ObjectCreated:*"]
    assert queue_rule["filter_prefix"] == "${var.incoming_prefix}"
    queue = referenced(queue_rule["queue_arn"], resources, "aws_sqs_queue")

    redrive = resources["aws_sqs_queue"][queue]["redrive_policy"]
    target = re.search(r"deadLetterTargetArn\s*=\s*(aws_sqs_queue\.[a-z0-9_]+\.arn)", redrive)
    assert target, f"queue {queue} has no dead-letter target: {redrive!r}"
    dead = referenced("${" + target.group(1) + "}", resources, "aws_sqs_queue")
    assert dead != queue
    assert re.search(r"maxReceiveCount\s*=\s*var\.max_receive_count", redrive)
    assert "redrive_policy" not in resources["aws_sqs_queue"][dead], "the dead-letter queue must not redrive on"

    # S3 may send to the queue only from this bucket, and the notification waits for that right.
    _, queue_policy = only(resources["aws_sqs_queue_policy"], "queue policy")
    assert referenced(queue_policy["queue_url"], resources, "aws_sqs_queue") == queue
    assert "${aws_sqs_queue_policy." in str(notification["depends_on"])


def policy_documents(blocks) -> dict[str, dict]:
    documents = blocks["data"].get("aws_iam_policy_document", {})
    assert documents, "no aws_iam_policy_document in infra/terraform"
    inline = [f"{t}.{n}" for t, named in blocks["resource"].items() for n, body in named.items()
              if "policy" in body and t in {"aws_iam_policy", "aws_iam_role_policy"} and "aws_iam_policy_document" not in str(body["policy"])]
    assert not inline, f"IAM policies written inline cannot be checked here; use aws_iam_policy_document: {inline}"
    return documents


def allow_statements(documents: dict[str, dict]):
    for name, document in documents.items():
        for statement in document.get("statement", []):
            if statement.get("effect", "Allow") == "Allow":
                yield name, statement


def test_iam_allows_only_named_actions_on_scoped_resources(blocks):
    checked = 0
    for name, statement in allow_statements(policy_documents(blocks)):
        where = f"{name}/{statement.get('sid', 'statement')}"
        actions = statement.get("actions")
        assert isinstance(actions, list) and actions, f"{where}: actions must be a literal list"
        assert "not_actions" not in statement and "not_resources" not in statement, where
        for action in actions:
            assert "*" not in action, f"{where}: wildcard action {action!r}"
        if actions == ["sts:AssumeRole"]:  # a trust policy: its principals are the scope
            (principals,) = statement["principals"]
            assert "*" not in str(principals["identifiers"]), f"{where}: anyone may assume the role"
            if principals["type"] == "Service":
                assert all(i.endswith(".amazonaws.com") for i in principals["identifiers"]), where
            else:
                assert principals["type"] == "AWS", where
            continue
        resources = statement.get("resources")
        assert isinstance(resources, list) and resources, f"{where}: resources must be a literal list"
        for resource in resources:
            assert resource.strip() != "*", f"{where}: unscoped resource '*'"
            assert not re.fullmatch(r"\$\{[^}]*\}/\*", resource), f"{where}: {resource!r} is the whole bucket"
            if resource == "${local.bucket_arn}" or resource.endswith("aws_s3_bucket.data.arn}"):
                # The bucket itself is only for listing, and only under given prefixes.
                assert actions == ["s3:ListBucket"], f"{where}: {actions} on the whole bucket"
                (condition,) = statement["condition"]
                assert condition["variable"] == "s3:prefix" and all(v.endswith("*") and v != "*" for v in condition["values"]), where
        checked += 1
    assert checked >= 5


def test_roles_keep_to_their_own_part(blocks):
    documents = policy_documents(blocks)

    def actions(document: str) -> set[str]:
        return {a for _, s in allow_statements({document: documents[document]}) for a in s["actions"]}

    def resources(document: str) -> str:
        return " ".join(r for _, s in allow_statements({document: documents[document]}) for r in s.get("resources", []))

    assert actions("bridge") and all(a.startswith("sqs:") for a in actions("bridge")), "the bridge needs no S3 right"
    assert "sqs:SendMessage" in actions("bridge") and "batches_dead" in resources("bridge")
    assert all(a.startswith("s3:") for a in actions("worker"))
    assert "mlflow_artifacts_prefix" not in resources("worker"), "workers reach artifacts through MLflow's proxy"
    assert "mlflow_artifacts_prefix" in resources("mlflow")
    assert "s3:DeleteObject" not in {a for _, s in allow_statements({"worker": documents["worker"]}) if "incoming_prefix" in str(s["resources"]) for a in s["actions"]}


def test_checkov_skips_carry_a_reason():
    for path in tf_files():
        for line in path.read_text().splitlines():
            if "checkov:skip=" in line:
                check, _, reason = line.split("checkov:skip=", 1)[1].partition(":")
                assert re.fullmatch(r"CKV2?_[A-Z]+_\d+", check), f"{path.name}: {line.strip()}"
                assert len(reason.strip()) > 20, f"{path.name}: skip of {check} without a reason"
