"""S3 notification -> batch_landed translation (leanops.bridge) and the Lambda handler's pure parts."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from leanops.bridge import ObjectFilter, event_document, translate
from leanops.errors import MalformedNotification
from leanops.events import BATCH_LANDED, BATCH_TO_SCORE

ROOT = Path(__file__).resolve().parent.parent
ANY = ObjectFilter()


def s3_record(key="incoming/2013-07.parquet", bucket="leanops", name="ObjectCreated:Put", **obj):
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2024-05-01T12:00:00.123Z",
        "eventName": name,
        "s3": {
            "s3SchemaVersion": "1.0",
            "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
            "object": {"key": key, "size": 1234, "eTag": "0a1b2c", "versionId": "v1", "sequencer": "0055AED6DCD90281E5", **obj},
        },
    }


def s3_notification(*records):
    return json.dumps({"Records": list(records or [s3_record()])})


def sns_wrapped(body: str) -> str:
    return json.dumps({"Type": "Notification", "MessageId": "m-1", "TopicArn": "arn:aws:sns:us-east-1:1:t", "Message": body})


def eventbridge(key="incoming/2013-07.parquet", detail_type="Object Created", source="aws.s3"):
    return json.dumps({
        "version": "0",
        "id": "17793124-05d4-b198-2fde-7ededc63b103",
        "detail-type": detail_type,
        "source": source,
        "time": "2024-05-01T12:00:00Z",
        "region": "us-east-1",
        "detail": {
            "bucket": {"name": "leanops"},
            "object": {"key": key, "size": 1234, "etag": "0a1b2c", "version-id": "v1", "sequencer": "0055AED6DCD90281E5"},
            "reason": "PutObject",
        },
    })


# --- the three shapes -----------------------------------------------------------------------------


def test_s3_notification_becomes_one_batch_landed_event():
    [event] = translate(s3_notification())

    assert event.event == BATCH_LANDED
    assert event.resource_id == "s3://leanops/incoming/2013-07.parquet"
    assert event.payload == {
        "bucket": "leanops", "key": "incoming/2013-07.parquet", "uri": "s3://leanops/incoming/2013-07.parquet",
        "version_id": "v1", "sequencer": "0055AED6DCD90281E5", "size": 1234, "etag": "0a1b2c",
    }
    assert event.occurred == "2024-05-01T12:00:00.123000+00:00"


def test_sns_wrapped_and_eventbridge_shapes_give_the_same_event():
    [direct] = translate(s3_notification())
    [via_sns] = translate(sns_wrapped(s3_notification()))
    [via_eventbridge] = translate(eventbridge())

    assert via_sns == direct
    # Same object, version and sequencer: the same deterministic id whatever the route.
    assert via_eventbridge.event_id == direct.event_id
    assert via_eventbridge.payload == direct.payload


def test_every_record_of_a_message_counts():
    events = translate(s3_notification(s3_record("incoming/a.parquet"), s3_record("incoming/b.parquet")))

    assert [e.payload["key"] for e in events] == ["incoming/a.parquet", "incoming/b.parquet"]


def test_moto_record_without_version_or_sequencer_still_has_a_stable_id():
    body = s3_notification(s3_record(versionId=None, sequencer=None))

    first, second = translate(body), translate(body)

    assert first[0].event_id == second[0].event_id
    assert first[0].payload["version_id"] == "" and first[0].payload["sequencer"] == ""


def test_a_new_sequencer_is_a_new_event():
    [one] = translate(s3_notification(s3_record(sequencer="0055AED6DCD90281E5")))
    [two] = translate(s3_notification(s3_record(sequencer="0055AED6DCD90281E6")))

    assert one.event_id != two.event_id


# --- what is ignored --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2024-05-01T12:00:00Z", "Bucket": "leanops"}),
        sns_wrapped(json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "leanops"})),
        s3_notification(s3_record(name="ObjectRemoved:Delete")),
        eventbridge(detail_type="Object Deleted"),
        json.dumps({"Records": []}),
    ],
    ids=["test-event", "test-event-via-sns", "object-removed", "eventbridge-deleted", "no-records"],
)
def test_test_events_and_non_creations_give_no_event(body):
    assert translate(body) == []


# --- keys -------------------------------------------------------------------------------------------


def test_keys_are_url_decoded():
    # S3 writes "incoming/my file été+1.parquet" as below: space as '+', the real '+' as %2B.
    raw = "incoming/my+file+%C3%A9t%C3%A9%2B1.parquet"

    [event] = translate(s3_notification(s3_record(key=raw)))
    [from_eventbridge] = translate(eventbridge(key=raw))

    assert event.payload["key"] == "incoming/my file été+1.parquet"
    assert event.resource_id == "s3://leanops/incoming/my file été+1.parquet"
    assert from_eventbridge.payload["key"] == event.payload["key"]


def test_encoded_slash_in_prefix_is_decoded_before_filtering():
    only_incoming = ObjectFilter.of(prefix="incoming/", suffix=".parquet")

    [event] = translate(s3_notification(s3_record(key="incoming%2Fcheck.parquet")), only_incoming)

    assert event.payload["key"] == "incoming/check.parquet"


# --- filters ----------------------------------------------------------------------------------------


def test_filters_on_bucket_prefix_and_suffix():
    body = s3_notification(
        s3_record("incoming/a.parquet", bucket="leanops"),
        s3_record("incoming/b.csv", bucket="leanops"),
        s3_record("archive/c.parquet", bucket="leanops"),
        s3_record("incoming/d.parquet", bucket="other"),
    )

    kept = translate(body, ObjectFilter.of(["leanops"], "incoming/", ".parquet"))
    any_bucket = translate(body, ObjectFilter.of([], "incoming/", ".parquet"))

    assert [e.resource_id for e in kept] == ["s3://leanops/incoming/a.parquet"]
    assert [e.resource_id for e in any_bucket] == ["s3://leanops/incoming/a.parquet", "s3://other/incoming/d.parquet"]


def test_objects_under_the_scoring_prefix_become_batches_to_score_and_nothing_else():
    body = s3_notification(
        s3_record("incoming/flights-delay/2013-07.parquet"),
        s3_record("to-score/flights-delay/today.csv"),
        s3_record("to-score/flights-delay/_SUCCESS"),
        s3_record("scored/flights-delay/today.v3.parquet"),
    )
    incoming = ObjectFilter.of([], "incoming/", ".parquet")
    to_score = ObjectFilter.of([], "to-score/", [".parquet", ".csv"])

    landed, scoring = translate(body, incoming, to_score)

    assert (landed.event, landed.resource_id) == (BATCH_LANDED, "s3://leanops/incoming/flights-delay/2013-07.parquet")
    assert (scoring.event, scoring.resource_id) == (BATCH_TO_SCORE, "s3://leanops/to-score/flights-delay/today.csv")
    assert scoring.payload.keys() == landed.payload.keys() and scoring.payload["key"] == "to-score/flights-delay/today.csv"
    # The same object announced for scoring and for a drift check would be two events, never one deduplicated away.
    assert translate(s3_notification(s3_record("to-score/x.csv")), ANY, to_score)[0].event_id != translate(
        s3_notification(s3_record("to-score/x.csv")), ANY)[0].event_id


def test_a_scoring_prefix_inside_the_incoming_prefix_still_wins():
    body = s3_notification(s3_record("incoming/to-score/m/a.parquet"))

    [event] = translate(body, ObjectFilter.of([], "incoming/", ".parquet"), ObjectFilter.of([], "incoming/to-score/", ".parquet"))

    assert event.event == BATCH_TO_SCORE


# --- malformed --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        "not json at all",
        b"\xff\xfe not utf-8",
        "[1, 2, 3]",
        json.dumps({"hello": "world"}),
        json.dumps({"Records": {"not": "a list"}}),
        json.dumps({"Records": ["a string"]}),
        s3_notification({**s3_record(), "eventSource": "aws:sqs"}),
        s3_notification({**s3_record(), "s3": {"bucket": {"name": "leanops"}, "object": {"size": 1}}}),
        s3_notification({**s3_record(), "s3": {"object": {"key": "incoming/a.parquet"}}}),
        s3_notification(s3_record(size="1234")),
        s3_notification(s3_record(key="")),
        s3_notification({**s3_record(), "eventTime": "yesterday"}),
        json.dumps({"Type": "Notification", "Message": "{not json"}),
        json.dumps({"Type": "SubscriptionConfirmation", "Message": "{}"}),
        eventbridge(source="aws.ec2"),
        json.dumps({"source": "aws.s3", "detail-type": "Object Created", "detail": {"bucket": {"name": "b"}}}),
    ],
    ids=[
        "text", "bytes", "json-list", "unknown-object", "records-not-list", "record-not-object", "not-s3-source",
        "no-key", "no-bucket", "size-string", "empty-key", "bad-time", "sns-bad-message", "sns-subscription",
        "eventbridge-other-source", "eventbridge-no-object",
    ],
)
def test_malformed_messages_raise_a_specific_error(body):
    with pytest.raises(MalformedNotification):
        translate(body)


# --- wire format ------------------------------------------------------------------------------------


def test_event_document_is_what_prefects_events_endpoint_accepts():
    from prefect.server.events.schemas.events import Event

    [landed] = translate(s3_notification(s3_record(key="incoming/my+file.parquet")))

    parsed = Event.model_validate(event_document(landed))

    assert str(parsed.id) == landed.event_id
    assert parsed.event == BATCH_LANDED
    assert parsed.resource.id == "s3://leanops/incoming/my file.parquet"
    assert parsed.resource["s3.key"] == "incoming/my file.parquet"
    assert parsed.payload["size"] == 1234
    assert parsed.occurred.isoformat().startswith("2024-05-01T12:00:00.123")


# --- the Lambda package -----------------------------------------------------------------------------


def test_lambda_defaults_match_the_settings():
    from deployments import lambda_handler
    from leanops.settings import Settings

    defaults = Settings.model_fields
    assert lambda_handler.DEFAULT_PREFIX == defaults["s3_incoming_prefix"].default
    assert lambda_handler.DEFAULT_SUFFIX == defaults["s3_incoming_suffix"].default
    assert lambda_handler.DEFAULT_SCORING_PREFIX == defaults["s3_scoring_prefix"].default
    assert list(lambda_handler.DEFAULT_SCORING_SUFFIXES) == defaults["s3_scoring_suffixes"].default_factory()


@pytest.mark.parametrize("spelling", ['["leanops", "raw"]', "leanops, raw"])
def test_lambda_reads_the_bucket_allow_list_as_json_or_commas(spelling):
    from deployments.lambda_handler import object_filter

    chosen = object_filter({"LEANOPS_S3_BUCKET_ALLOW_LIST": spelling, "LEANOPS_S3_INCOMING_SUFFIX": ".csv"})

    assert chosen == ObjectFilter.of(["leanops", "raw"], "incoming/", ".csv")


def test_lambda_package_runs_on_the_standard_library_alone(tmp_path):
    # The files a Lambda zip ships, and an interpreter without site-packages (-S) or env paths (-I).
    for relative in ["leanops/__init__.py", "leanops/bridge.py", "leanops/events.py", "leanops/errors.py",
                     "deployments/__init__.py", "deployments/lambda_handler.py"]:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / relative, tmp_path / relative)
    script = (
        "import json, sys; sys.path.insert(0, sys.argv[1]);"
        "from deployments.lambda_handler import handler;"
        "body = json.dumps({'Service': 'Amazon S3', 'Event': 's3:TestEvent'});"
        "print(json.dumps(handler({'Records': [{'eventSource': 'aws:sqs', 'messageId': 'a', 'body': body},"
        "                                       {'eventSource': 'aws:sqs', 'messageId': 'b', 'body': 'junk'}]}, None, {})));"
        "print(sorted(m.split('.')[0] for m in sys.modules if m.split('.')[0] in ('pydantic', 'pandas', 'httpx', 'prefect', 'boto3')))"
    )

    done = subprocess.run([sys.executable, "-I", "-S", "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=60)

    assert done.returncode == 0, done.stderr
    answer, third_party = done.stdout.splitlines()
    assert json.loads(answer) == {"batchItemFailures": [{"itemIdentifier": "b"}]}
    assert third_party == "[]"
