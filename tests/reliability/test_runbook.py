"""docs/runbook.md's recovery commands, each run as written (bash, with the variables an entry names) against
the real local services, in a situation that needs it, with its recovery asserted.

The commands come from the runbook's fenced ```bash blocks, so the document and this test cannot drift
apart: a command added to the runbook fails test_every_runbook_command_runs_in_a_test until a test here
runs it, and a command a test runs must be in the runbook word for word.

Each command runs in a fresh shell with .venv/bin first on PATH (the runbook's "environment active").
Batches land under a prefix of this module's own (LEANOPS_S3_INCOMING_PREFIX) that the bucket's
notification ignores, so no deployment of another test checks them behind this one's back."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from leanops import datasets, drift, monitoring, registry, storage
from leanops.local_cache import entry, use_once_fetched
from reliability.faults import processed_mark
from support import dated_check, spec_copy, wait_for, wait_for_events

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
RUNBOOK = ROOT / "docs" / "runbook.md"
BIN = Path(sys.executable).parent

# Each runbook command (by how it starts) and the test that runs it.
COVERED = {
    "leanops doctor": "test_doctor_names_the_service_that_is_down_with_its_fix",
    "leanops status": "test_status_and_history_show_a_model_and_its_decisions",
    'leanops history "$MODEL"': "test_a_person_decides_again_after_an_approval_timed_out",
    'leanops recheck "$BATCH" --local': "test_a_batch_left_unchecked_is_checked_by_hand",
    'leanops retrain "$MODEL" --local': "test_a_retrain_left_running_by_a_dead_process_is_marked_crashed_and_rerun",
    'leanops mark-crashed "$RUN_ID"': "test_a_retrain_left_running_by_a_dead_process_is_marked_crashed_and_rerun",
    "python -m flows.reconcile": "test_a_landed_batch_nobody_announced_is_announced_again",
    'leanops land "$MODEL" "$FILE"': "test_a_corrected_batch_is_landed_under_its_model",
    'leanops promote "$MODEL" --version "$VERSION" --ask-again --local': "test_a_person_decides_again_after_an_approval_timed_out",
    "prefect gcl ": "test_a_stuck_lock_slot_is_freed",
    "df -h": "test_old_cached_results_are_deleted_on_a_full_disk",
    "du -sh": "test_old_cached_results_are_deleted_on_a_full_disk",
    "find ": "test_old_cached_results_are_deleted_on_a_full_disk",
    "leanops cache prune": "test_old_cached_results_are_deleted_on_a_full_disk",
    "leanops drift prune": "test_old_drift_reports_are_deleted_on_a_full_disk",
    "leanops slack-check": "test_an_expired_slack_token_is_replaced",
    "grep -v '^LEANOPS_SLACK_TOKEN=' .env": "test_an_expired_slack_token_is_replaced",
    "leanops dlq ": "test_dead_letters_are_listed_redriven_and_dropped",
}


def runbook_commands() -> list[str]:
    """Every command line of the runbook's ```bash blocks, in order."""
    blocks = re.findall(r"^```bash\n(.*?)^```", RUNBOOK.read_text(), flags=re.MULTILINE | re.DOTALL)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip() and not line.strip().startswith("#")]


def doc_commands(start: str) -> list[str]:
    """The runbook's command lines that start with ``start`` (at least one)."""
    assert start in COVERED, f"add {start!r} to COVERED"
    found = list(dict.fromkeys(c for c in runbook_commands() if c.startswith(start)))  # once each, in order
    assert found, f"docs/runbook.md has no command starting with {start!r}"
    return found


def run(command: str, cwd: Path | None = None, timeout: float = 300, **variables: str) -> subprocess.CompletedProcess:
    """One runbook line in bash, with the variables it names, from ``cwd`` (default: the project folder)."""
    # A wide "terminal": tables (prefect gcl ls) print whole names instead of cutting them.
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "COLUMNS": "200", **variables}
    return subprocess.run(["bash", "-c", command], cwd=str(cwd or ROOT), env=env, capture_output=True, text=True, timeout=timeout)


def ok(command: str, **kwargs) -> str:
    done = run(command, **kwargs)
    assert done.returncode == 0, f"{command}\nexit {done.returncode}\nstdout: {done.stdout[-2000:]}\nstderr: {done.stderr[-3000:]}"
    return done.stdout + done.stderr


def test_every_runbook_command_runs_in_a_test():
    commands = runbook_commands()
    assert len(commands) >= 15
    uncovered = [c for c in commands if not any(c.startswith(start) for start in COVERED)]
    assert uncovered == [], f"runbook commands no test runs: {uncovered}"
    tests = {name for name, value in globals().items() if name.startswith("test_") and callable(value)}
    assert set(COVERED.values()) <= tests


def test_doctor_names_the_service_that_is_down_with_its_fix(stack):
    (doctor,) = doc_commands("leanops doctor")
    # MLflow is down: nothing listens where the settings say it is.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{sock.getsockname()[1]}"

    done = run(doctor, timeout=120, LEANOPS_MLFLOW_TRACKING_URI=down)

    lines = done.stdout.splitlines()
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    line = next(n for n, text in enumerate(lines) if text.startswith("FAIL MLflow"))
    assert lines[line].endswith(f"unreachable at {down} (connection refused)")
    assert lines[line + 1].strip().startswith("fix: start what is down: make stack-up")
    assert any(text.startswith("ok   Prefect API ") for text in lines) and any(text.startswith("ok   S3 bucket ") for text in lines)


@pytest.fixture(scope="module")
def place(stack, small_champion, tmp_path_factory):
    """A specs folder holding the small champion's spec, and an incoming prefix of this module's own."""
    return {
        "LEANOPS_SPECS_DIR": str(small_champion["specs"]),
        "LEANOPS_S3_INCOMING_PREFIX": f"runbook-incoming-{uuid.uuid4().hex[:6]}/",
    }


def test_status_and_history_show_a_model_and_its_decisions(small_champion, place):
    (status,) = doc_commands("leanops status")
    shown = ok(status, **place)
    assert small_champion["name"] in shown and f"v{small_champion['version']}" in shown


def test_a_batch_left_unchecked_is_checked_by_hand(small_champion, stack, place):
    # Its check failed on an outage (S3, MLflow, a full disk): no processed mark, no verdict.
    name = small_champion["name"]
    uri = storage.write_table(
        datasets.flights_sample([8], rows_per_month=2500, seed=31),
        f"s3://{stack.s3_bucket}/{place['LEANOPS_S3_INCOMING_PREFIX']}{name}/2013-08-unchecked.parquet",
    )
    assert processed_mark(uri) is None

    (recheck,) = doc_commands('leanops recheck "$BATCH" --local')
    said = ok(recheck, BATCH=uri, **place)

    mark = processed_mark(uri)
    assert mark is not None and mark.status in {"ok", "drift"}, mark
    assert f"{uri}: {mark.status}" in said
    history = drift.read_history(monitoring.history_uri(name))
    assert list(history.loc[history["batch_uri"] == uri, "status"]) == [mark.status]
    assert registry.get_champion(name).version == small_champion["version"]


def _running_retrain(spec_path: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["retrain"])),
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING]))),
        )
    return next((run for run in runs if run.parameters.get("spec") == spec_path), None)


def _state_of(flow_run_id) -> str:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id).state.type.value


def test_a_retrain_left_running_by_a_dead_process_is_marked_crashed_and_rerun(stack, tmp_path):
    name = f"runbook-retrain-{uuid.uuid4().hex[:6]}"
    window = f"s3://{stack.s3_bucket}/runbook-train/{name}/"
    storage.write_table(datasets.flights_sample(range(1, 7), rows_per_month=300, seed=5), f"{window}2013-h1.parquet")
    specs = tmp_path / "specs"
    specs.mkdir()
    spec = str(spec_copy(specs, name, model__params__n_estimators=10, retrain_window__prefix=window))

    # Its worker dies mid-run: the process is SIGKILLed while the server shows the run Running.
    process = subprocess.Popen([sys.executable, "-m", "flows.retrain", "--spec", spec], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        run_ = wait_for(lambda: _running_retrain(spec), "the retrain to be Running", 120, 0.2)
    finally:
        process.kill()
        process.wait()
    assert _state_of(run_.id) == "RUNNING"

    (mark,) = doc_commands('leanops mark-crashed "$RUN_ID"')
    said = ok(mark, RUN_ID=str(run_.id))
    assert _state_of(run_.id) == "CRASHED" and "Running -> Crashed" in said
    # A finished run is refused: the command never rewrites history.
    assert run(mark, RUN_ID=str(run_.id)).returncode == 1

    (retrain,) = doc_commands('leanops retrain "$MODEL" --local')
    said = ok(retrain, MODEL=name, LEANOPS_SPECS_DIR=str(specs))
    versions = registry.list_versions(name)
    assert len(versions) == 1 and f"{name} v{versions[0].version} registered" in said


def test_a_landed_batch_nobody_announced_is_announced_again(stack, place, small_champion):
    # Its notification was lost (Prefect down past the bridge's retries, a redelivery forgotten).
    uri = storage.write_table(
        datasets.flights_sample([9], rows_per_month=600, seed=32),
        f"s3://{stack.s3_bucket}/{place['LEANOPS_S3_INCOMING_PREFIX']}{small_champion['name']}/2013-09-lost.parquet",
    )
    (reconcile,) = doc_commands("python -m flows.reconcile")
    said = ok(reconcile, MODEL=small_champion["name"], **place)
    assert re.search(rf"announced \d+ batches: .*{re.escape(uri)}", said), said[-3000:]
    from leanops import events

    assert wait_for_events(stack.resolved_prefect_api_url, events.BATCH_LANDED, uri, timeout=30)


def test_a_corrected_batch_is_landed_under_its_model(small_champion, stack, place, tmp_path):
    fixed = tmp_path / "2013-10-fixed.csv"
    datasets.flights_sample([10], rows_per_month=400, seed=33).to_csv(fixed, index=False)

    (land,) = doc_commands('leanops land "$MODEL" "$FILE"')
    said = ok(land, MODEL=small_champion["name"], FILE=str(fixed), **place)

    uri = f"s3://{stack.s3_bucket}/{place['LEANOPS_S3_INCOMING_PREFIX']}{small_champion['name']}/2013-10-fixed.parquet"
    assert f"landed 400 rows at {uri}" in said
    assert len(storage.read_table(uri)[0]) == 400


def test_a_person_decides_again_after_an_approval_timed_out(small_champion, stack, tmp_path):
    from flows.promote import promote
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType
    from prefect.flow_runs import resume_flow_run

    name = f"runbook-approval-{uuid.uuid4().hex[:6]}"
    version = str(registry.client().copy_model_version(f"models:/{small_champion['name']}/{small_champion['version']}", name).version)
    gates = {
        "promotion__approval": "manual", "promotion__must_beat_baseline": False, "promotion__min_primary": 0.5,
        "promotion__latency_budget_ms_per_1k_rows": 1e6,  # the latency gate measures this machine's load, not the model
    }
    specs = tmp_path / "specs"
    specs.mkdir()
    timed_out = promote(spec=str(spec_copy(tmp_path, name, promotion__approval_timeout_seconds=2, **gates)), version=version)
    assert (timed_out.action, timed_out.by) == ("rejected", "timeout")
    spec_copy(specs, name, promotion__approval_timeout_seconds=120, **gates)

    (again,) = doc_commands('leanops promote "$MODEL" --version "$VERSION" --ask-again --local')
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "MODEL": name, "VERSION": version, "LEANOPS_SPECS_DIR": str(specs)}
    # Output to a file, not a pipe nobody reads while the run waits (MLflow's progress bars would fill it and block it).
    log = tmp_path / "promote.log"
    with log.open("w") as output:
        process = subprocess.Popen(["bash", "-c", again], cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT, text=True)

    def paused():
        assert process.poll() is None, f"the promote command ended before it asked a person:\n{log.read_text()[-3000:]}"
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=["promote"])),
                flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))),
            )
        return next((r.id for r in runs if r.parameters.get("spec") == name), None)

    try:
        try:
            run_id = wait_for(paused, "the promote run to pause for a person's answer", 420, 0.3)  # >120 s seen at load 20
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the command said so far:\n{log.read_text()[-4000:]}") from None

        def answered():
            try:
                resume_flow_run(run_id, run_input={"approve": True, "approver": "ana", "reason": "looked again"})
            except RuntimeError:  # the form's schema is saved just after the pause
                return False
            return True

        wait_for(answered, "the paused run to take the answer", 30, 0.3)
        process.wait(timeout=180)
    finally:
        process.kill()
    out = log.read_text()
    assert process.returncode == 0, out[-3000:]
    assert f"promoted: {name} v{version}" in out
    assert registry.alias_version(name, registry.CHAMPION) == version

    (history,) = doc_commands('leanops history "$MODEL"')
    shown = ok(history, MODEL=name, LEANOPS_SPECS_DIR=str(specs))
    assert "timeout" in shown and "promoted" in shown and "ana" in shown


def test_a_stuck_lock_slot_is_freed(stack):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate

    from tasks._locks import lock_name, model_lock

    model = f"runbook-lock-{uuid.uuid4().hex[:6]}"
    name = lock_name(model, "aliases")
    # As after a server restart while a run held it: the count says taken, no lease will ever free it.
    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1, active=True))
        client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(active_slots=1))
    with pytest.raises(TimeoutError):
        with model_lock(model, "aliases", timeout_seconds=2):
            pass

    listed, inspected, update = doc_commands("prefect gcl ")
    assert name in ok(listed, MODEL=model)
    assert re.search(r"active_slots=1\b", ok(inspected, MODEL=model)), "inspect shows the taken slot"
    ok(update, MODEL=model)

    with model_lock(model, "aliases", timeout_seconds=30):
        with get_client(sync_client=True) as client:
            assert client.read_global_concurrency_limit_by_name(name).active_slots == 1  # ours now
    with get_client(sync_client=True) as client:
        assert client.read_global_concurrency_limit_by_name(name).active_slots == 0


_HOLD_THE_LOCK = """
import sys, time
from tasks._locks import model_lock
with model_lock(sys.argv[1], "registration"):
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_lock_held_by_a_killed_process_is_freed_when_its_lease_runs_out(stack):
    from tasks._locks import model_lock

    model = f"runbook-dead-holder-{uuid.uuid4().hex[:6]}"
    lease = 60  # the least the server accepts
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_THE_LOCK, model], cwd=ROOT, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "LEANOPS_LOCK_LEASE_SECONDS": str(lease)},
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(TimeoutError):  # it is really held
            with model_lock(model, "registration", timeout_seconds=2):
                pass
    finally:
        holder.kill()
        holder.wait()
    # Killed without releasing: its lease is no longer renewed, and the server's repossessor (15 s loop) frees it.
    killed_at = time.monotonic()
    with model_lock(model, "registration", timeout_seconds=120):
        waited = time.monotonic() - killed_at
    assert waited < lease + 15 + 20, f"the dead holder's slot was freed only after {waited:.0f} s"


def test_old_cached_results_are_deleted_on_a_full_disk(tmp_path):
    home = tmp_path / "leanops-home"
    (home / "prefect-results").mkdir(parents=True)
    old, recent = home / "prefect-results" / "old-cache-key", home / "prefect-results" / "recent-cache-key"
    old.write_bytes(b"x" * 1000)
    recent.write_bytes(b"y" * 1000)
    month_and_more = time.time() - 40 * 86400
    os.utime(old, (month_and_more, month_and_more))
    artifacts = home / "cache" / "mlflow-artifacts"
    use_once_fetched(artifacts, "run r1 model", lambda folder: write_bytes(folder / "model.ubj", 600 * 2**20), lambda path: path)
    yesterday = time.time() - 86400
    os.utime(entry(artifacts, "run r1 model"), (yesterday, yesterday))

    (df,) = doc_commands("df -h")
    (du,) = doc_commands("du -sh")
    (find,) = doc_commands("find ")
    assert "Avail" in ok(df, LEANOPS_HOME=str(home))
    assert "prefect-results" in ok(du, LEANOPS_HOME=str(home))
    ok(find, LEANOPS_HOME=str(home))
    assert not old.exists() and recent.exists()
    (prune,) = doc_commands("leanops cache prune")
    assert "removed 1 cached artifact(s)" in ok(prune, LEANOPS_HOME=str(home))
    assert not entry(artifacts, "run r1 model").exists()


def test_old_drift_reports_are_deleted_on_a_full_disk(mlflow_server):
    from leanops.mlflow_access import client
    from leanops.settings import get_settings

    model = f"runbook-reports-{uuid.uuid4().hex[:6]}"
    runs = {days: dated_check(model, days, get_settings()) for days in (40, 10)}

    (prune,) = doc_commands("leanops drift prune")
    assert re.search(r"deleted [1-9]\d* drift check\(s\)", ok(prune))
    stages = {days: client().get_run(run_id).info.lifecycle_stage for days, run_id in runs.items()}
    assert stages == {40: "deleted", 10: "active"}
    assert client().list_artifacts(runs[40], "drift") == []


def write_bytes(path: Path, size: int) -> Path:
    with path.open("wb") as file:
        file.truncate(size)  # sparse: the cache counts its bytes, the disk holds none
    return path


def test_an_expired_slack_token_is_replaced(slack, tmp_path):
    slack.valid_tokens = {"xoxb-new"}
    (tmp_path / ".env").write_text("LEANOPS_SLACK_CHANNEL=#ops\nLEANOPS_SLACK_TOKEN=xoxb-expired\n")
    (check,) = doc_commands("leanops slack-check")  # run before and after the token is replaced
    (replace,) = doc_commands("grep -v '^LEANOPS_SLACK_TOKEN=' .env")
    variables = {"LEANOPS_SLACK_BASE_URL": slack.base_url, "NEW_SLACK_TOKEN": "xoxb-new"}

    refused = run(check, cwd=tmp_path, **variables)
    assert refused.returncode == 1 and "token_expired" in refused.stdout + refused.stderr
    ok(replace, cwd=tmp_path, **variables)
    assert (tmp_path / ".env").read_text().splitlines() == ["LEANOPS_SLACK_CHANNEL=#ops", "LEANOPS_SLACK_TOKEN=xoxb-new"]
    assert "Slack accepts the token" in ok(check, cwd=tmp_path, **variables)
    assert [r["headers"].get("Authorization") for r in slack.requests] == ["Bearer xoxb-expired", "Bearer xoxb-new"]


def test_dead_letters_are_listed_redriven_and_dropped(stack, s3_bridge):
    from leanops import events
    from support import s3_notification

    _queue_url, dead_letter_url = s3_bridge
    key = f"{stack.s3_incoming_prefix}runbook-dlq/{uuid.uuid4().hex[:6]}.parquet"
    uri = f"s3://{stack.s3_bucket}/{key}"
    # One the bridge dead-lettered itself (unreadable), one SQS moved there after too many receives.
    storage.send_message(storage.queue_url(stack.sqs_queue_name), '{"Records": "not a list"}')
    storage.send_message(dead_letter_url, s3_notification(stack.s3_bucket, key))
    from leanops import deadletter

    def both():
        letters = deadletter.list_dead_letters()
        mine = [d for d in letters if d.objects == (uri,) or "'Records' is a str" in d.reason]
        return mine if len(mine) == 2 else None

    letters = wait_for(both, "the bridge to dead-letter the unreadable message", 60, 0.5)
    lost = next(d for d in letters if d.objects == (uri,))
    unreadable = next(d for d in letters if not d.objects)

    listed, redrive, drop = doc_commands("leanops dlq ")
    shown = ok(listed)
    assert lost.message_id in shown and unreadable.message_id in shown and "malformed notification" in shown and uri in shown

    ok(redrive, MESSAGE_ID=lost.message_id)
    assert wait_for_events(stack.resolved_prefect_api_url, events.BATCH_LANDED, uri, timeout=60), "the redriven notification became an event"
    ok(drop, MESSAGE_ID=unreadable.message_id)
    remaining = {d.message_id for d in deadletter.list_dead_letters()}
    assert lost.message_id not in remaining and unreadable.message_id not in remaining
