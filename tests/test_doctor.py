"""``leanops doctor``'s decisions (a live worker, a dead-letter queue in place, a notification reaching the
queue, a broken spec), and the command against services that are not there: each named unreachable, with
its fix, in seconds. The running stack and a stopped service: tests/e2e/test_cli.py."""

from __future__ import annotations

import json
import socket
import time
from datetime import datetime, timedelta, timezone

from typer.testing import CliRunner

from leanops import doctor
from leanops.doctor import WorkerBeat
from leanops.settings import Settings
from leanops.storage import NotificationRule
from leanops_cli.app import app
from support import spec_copy

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)
QUEUE_ARN, OTHER_ARN = "arn:aws:sqs:us-east-1:123456789012:leanops-batches", "arn:aws:sqs:us-east-1:123456789012:other"


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def test_a_worker_is_live_within_three_of_its_own_heartbeats():
    workers = [WorkerBeat("fast", ago(25), 10), WorkerBeat("default", ago(80), None), WorkerBeat("gone", ago(400), 30), WorkerBeat("new", None, 30)]
    live = doctor.judge_workers("pool", workers, NOW)
    assert (live.status, live.said) == ("ok", "2 live: fast (heartbeat 25 s ago), default (heartbeat 80 s ago)")

    dead = doctor.judge_workers("pool", [WorkerBeat("fast", ago(31), 10), WorkerBeat("gone", ago(400), 30)], NOW)
    assert dead.status == "fail" and "no live worker (last heartbeat fast, 31 s ago)" in dead.said
    assert "prefect worker start --pool pool" in dead.fix
    never = doctor.judge_workers("pool", [], NOW)
    assert never.status == "fail" and "no worker has ever polled it" in never.said


def test_the_queue_must_dead_letter_into_the_configured_queue():
    dead_arn = QUEUE_ARN + "-dead"
    assert doctor.judge_redrive("q", dead_arn, 10, "q-dead", dead_arn).status == "ok"
    missing = doctor.judge_redrive("q", None, None, "q-dead", dead_arn)
    assert missing.status == "fail" and "no dead-letter queue" in missing.said and "redrive policy to q-dead" in missing.fix
    elsewhere = doctor.judge_redrive("q", OTHER_ARN, 10, "q-dead", dead_arn)
    assert elsewhere.status == "fail" and OTHER_ARN in elsewhere.said
    waiting = doctor.judge_dead_letters("q-dead", 3)
    assert waiting.status == "warn" and "leanops dlq list" in waiting.fix


def test_new_batches_must_notify_the_bridges_queue():
    def judge(*rules: NotificationRule):
        return doctor.judge_notifications("leanops", rules, "leanops-batches", QUEUE_ARN, "incoming/", ".parquet")

    created = ("s3:ObjectCreated:*",)
    assert judge(NotificationRule(QUEUE_ARN, created, "incoming/", ".parquet")).status == "ok"
    assert judge(NotificationRule(QUEUE_ARN, created, "", "")).status == "ok"  # the whole bucket covers incoming/
    other = judge(NotificationRule(OTHER_ARN, created, "incoming/", ".parquet"), NotificationRule(QUEUE_ARN, created, "to-score/", ".csv"))
    assert other.status == "fail" and f"notify {OTHER_ARN}, not leanops-batches" in other.said
    deleted_only = judge(NotificationRule(QUEUE_ARN, ("s3:ObjectRemoved:*",), "incoming/", ".parquet"))
    assert deleted_only.status == "fail" and "notify no queue" in deleted_only.said and "python -m infra.stack up" in deleted_only.fix


def test_every_spec_of_the_folder_is_checked_and_a_broken_one_named(tmp_path):
    spec_copy(tmp_path, "good")
    spec_copy(tmp_path, "broken", task="binary", target={"column": "dep_delay"})
    checks = doctor.check_specs(Settings(specs_dir=tmp_path))
    by_name = {c.service: c for c in checks}
    assert by_name["spec good"].status == "ok"
    broken = by_name["spec broken"]
    assert broken.status == "fail" and "target.source Field required" in broken.said and "\n" not in broken.said
    assert f"leanops spec check {tmp_path / 'broken.yaml'}" in broken.fix
    assert doctor.check_specs(Settings(specs_dir=tmp_path / "nowhere"))[0].status == "fail"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_doctor_names_every_service_that_does_not_answer_with_its_fix(monkeypatch, tmp_path):
    for name, port in (("PREFECT_PORT", _closed_port()), ("MLFLOW_PORT", _closed_port()), ("S3_PORT", _closed_port())):
        monkeypatch.setenv(f"LEANOPS_{name}", str(port))
    monkeypatch.setenv("LEANOPS_HOME", str(tmp_path))  # no fork server socket there
    monkeypatch.setenv("LEANOPS_SPECS_DIR", str(tmp_path))
    spec_copy(tmp_path, "good")
    from leanops.settings import get_settings, reset_settings_cache

    reset_settings_cache()
    try:
        settings = get_settings()
        started = time.monotonic()
        result = CliRunner().invoke(app, ["doctor", "--json", "--timeout", "2"], catch_exceptions=False)
        took = time.monotonic() - started
    finally:
        reset_settings_cache()

    assert result.exit_code == 1, result.stdout
    checks = {c["service"]: c for c in json.loads(result.stdout)["checks"]}
    for service, where in (("Prefect API", settings.resolved_prefect_api_url), ("MLflow", settings.resolved_mlflow_tracking_uri),
                           ("S3 bucket", settings.resolved_s3_endpoint_url)):
        assert checks[service]["status"] == "fail" and f"at {where}" in checks[service]["said"], checks[service]
        assert "unreachable" in checks[service]["said"] and "connection refused" in checks[service]["said"]
        assert checks[service]["fix"].startswith("start what is down: make stack-up")
    assert checks["fork server"]["status"] == "fail" and "no socket at" in checks["fork server"]["said"]
    assert checks["workers of leanops-pool"]["status"] == "skip" and checks["spec good"]["status"] == "ok"
    assert took < 30, f"doctor took {took:.1f} s against closed ports"
