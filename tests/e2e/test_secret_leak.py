"""No secret leaks: retrain, promote and drift-monitor run on a real worker whose environment holds a random
sentinel for every secret leanops knows (Slack token, S3 keys, Prefect and MLflow credentials, database and
Redis URLs with passwords), then every place a person or another system reads is searched for them.

Searched: the Prefect log lines, artifacts, flow runs (parameters included) and task runs of those runs;
every event since the test began (payload, resource labels, related resources); every MLflow run started
since then (params, tags, metric names, every artifact file) and their logged models (params, tags,
files); the registered model and its versions (tags, description, source); every message and link the
(fake) Slack received; every S3 object written since then; every file of the stack's home written since
then (service logs, task results and cache records, the Prefect and MLflow databases).

The embedded servers check no credentials (auth is the production profile's, which needs PostgreSQL and
takes minutes to start): here the clients hold and send the Prefect and MLflow credentials, the servers
ignore them. Nothing can leak a secret the process never had, so the test first proves the runs had them
(Slack received the token in its Authorization header), and a value planted once in each searched place
must be found there, so a search that reads nothing cannot pass.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import secrets
import time
import uuid
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from leanops import datasets, registry, storage
from support import TERMINAL, api_call, delete_runs, finished_runs, runs_of, spec_copy, wait_for, wait_for_events

pytestmark = pytest.mark.e2e

MODEL = f"secrets-{uuid.uuid4().hex[:6]}"


def _random(prefix: str = "") -> str:
    # Letters and digits only: URL-encoding, JSON and shell quoting leave it as it is.
    return prefix + secrets.token_hex(16)


PREFECT_AUTH = f"leanops:{_random()}"
TRACKING_PASSWORD = _random()  # in the tracking URL the worker's runs use: user:password@host
MLFLOW_USER, MLFLOW_PASSWORD = "admin", _random()
SECRET_ENV = {
    "LEANOPS_SLACK_TOKEN": _random("xoxb"),
    "AWS_ACCESS_KEY_ID": "AKIA" + secrets.token_hex(8).upper(),
    "AWS_SECRET_ACCESS_KEY": _random(),
    "LEANOPS_PREFECT_AUTH_STRING": PREFECT_AUTH,
    "PREFECT_API_AUTH_STRING": PREFECT_AUTH,
    "LEANOPS_MLFLOW_USERNAME": MLFLOW_USER,
    "LEANOPS_MLFLOW_PASSWORD": MLFLOW_PASSWORD,
    "LEANOPS_MLFLOW_FLASK_SECRET_KEY": _random(),
    # Unused by the embedded stack (tuning is off), present in every process as in production.
    "LEANOPS_POSTGRES_URL": f"postgresql://leanops:{_random()}@127.0.0.1:5432",
    "LEANOPS_REDIS_URL": f"redis://:{_random()}@127.0.0.1:6379/11",
    "LEANOPS_OPTUNA_STORAGE": f"postgresql://optuna:{_random()}@127.0.0.1:5432/leanops_optuna",
}


def _password(url: str) -> str:
    return url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]


def _basic(credential: str) -> str:
    return base64.b64encode(credential.encode()).decode()


# What must appear nowhere: each secret, and the forms it takes on the wire (a basic-auth header's base64).
NEEDLES = {
    "Slack token": SECRET_ENV["LEANOPS_SLACK_TOKEN"],
    "AWS access key id": SECRET_ENV["AWS_ACCESS_KEY_ID"],
    "AWS secret access key": SECRET_ENV["AWS_SECRET_ACCESS_KEY"],
    "Prefect auth password": PREFECT_AUTH.split(":", 1)[1],
    "Prefect auth header": _basic(PREFECT_AUTH),
    "MLflow password": MLFLOW_PASSWORD,
    "MLflow auth header": _basic(f"{MLFLOW_USER}:{MLFLOW_PASSWORD}"),
    "MLflow Flask secret key": SECRET_ENV["LEANOPS_MLFLOW_FLASK_SECRET_KEY"],
    "PostgreSQL password": _password(SECRET_ENV["LEANOPS_POSTGRES_URL"]),
    "Redis password": _password(SECRET_ENV["LEANOPS_REDIS_URL"]),
    "Optuna storage password": _password(SECRET_ENV["LEANOPS_OPTUNA_STORAGE"]),
    "MLflow tracking URL password": TRACKING_PASSWORD,
    "MLflow tracking URL auth header": _basic(f"tracker:{TRACKING_PASSWORD}"),
}
# The positive control: planted once in each kind of place searched, found in each.
PLANTED = _random("planted")


# --- the searchable record --------------------------------------------------------------------------


class Record:
    """Everything read back, as (kind of place, where, text); binary content is also read as what it holds
    (zip members, parquet tables, gzip, Prefect result records' base64 payloads)."""

    def __init__(self):
        self.entries: list[tuple[str, str, str]] = []

    def add(self, kind: str, where: str, content) -> None:
        if isinstance(content, (bytes, bytearray)):
            for part, data in _readable_parts(where, bytes(content)):
                self.entries.append((kind, part, data.decode("latin-1")))
        else:
            text = content if isinstance(content, str) else json.dumps(content, default=str)
            self.entries.append((kind, where, text))

    def count(self, kind: str) -> int:
        return sum(1 for k, _, _ in self.entries if k == kind)

    def kinds(self) -> set[str]:
        return {k for k, _, _ in self.entries}

    def find(self, needle: str) -> list[tuple[str, str, str]]:
        """(kind, where, the text around it) of every entry holding ``needle``."""
        found = []
        for kind, where, text in self.entries:
            at = text.find(needle)
            if at >= 0:
                found.append((kind, where, text[max(0, at - 120): at + len(needle) + 80]))
        return found


def _readable_parts(where: str, data: bytes, depth: int = 0) -> list[tuple[str, bytes]]:
    parts = [(where, data)]
    if depth > 2:
        return parts
    try:
        if data[:2] == b"PK" and zipfile.is_zipfile(io.BytesIO(data)):
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                for name in archive.namelist():
                    parts += _readable_parts(f"{where}!{name}", archive.read(name), depth + 1)
        elif data[:2] == b"\x1f\x8b":
            parts += _readable_parts(f"{where} (gunzipped)", gzip.decompress(data), depth + 1)
        elif data[:4] == b"PAR1":
            import pyarrow.parquet as pq

            table = pq.read_table(io.BytesIO(data))
            parts.append((f"{where} (table)", (table.to_pandas().to_csv() + str(table.schema.metadata)).encode()))
        elif data[:1] == b"{" and b'"result"' in data:
            record = json.loads(data)
            if isinstance(record, dict) and isinstance(record.get("result"), str):
                parts += _readable_parts(f"{where} (result payload)", base64.decodebytes(record["result"].encode()), depth + 1)
    except Exception:  # noqa: BLE001, S110 - not what its first bytes suggested: searched as the raw bytes above
        pass
    return parts


# --- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def deployment_names():
    """The three flows searched; nothing else deployed (a drift starts no retrain here)."""
    return ("retrain/on-schedule", "promote/on-new-challenger", "drift-monitor/on-new-batch")


@pytest.fixture(scope="module")
def fake_slack():
    from fake_slack import FakeSlack

    fake = FakeSlack()
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def worker_env(fake_slack, settings):
    """The worker (and so every flow run it starts) holds the sentinels, as a production worker holds secrets."""
    tracking = f"http://tracker:{TRACKING_PASSWORD}@{settings.host}:{settings.mlflow_port}"
    return {**SECRET_ENV, "LEANOPS_MLFLOW_TRACKING_URI": tracking, "LEANOPS_SLACK_BASE_URL": fake_slack.base_url}


@pytest.fixture(scope="module")
def specs_dir(stack, tmp_path_factory):
    """One small model whose retrain window (2,400 flights of January-June) lies outside the watched prefix."""
    folder = tmp_path_factory.mktemp("secret-specs")
    spec_copy(folder, MODEL, retrain_window__prefix=f"windows/{MODEL}/", schedule__cron=None,
              model__params__n_estimators=40, retrain_window__cooldown_minutes=60,
              # Small batches: July (1,200 flights) drifts against a champion trained on 1,900 (its weather moves).
              drift__min_rows=1000)
    storage.write_table(datasets.flights_sample(range(1, 7), rows_per_month=400, seed=11),
                        f"s3://{stack.s3_bucket}/windows/{MODEL}/2013-h1.parquet")
    return folder


def _run_deployment(api: str, deployment_id: str, timeout: float, **parameters) -> dict:
    run_id = api_call(api, "POST", f"/deployments/{deployment_id}/create_flow_run", {"parameters": parameters}).json()["id"]

    def finished():
        run = api_call(api, "GET", f"/flow_runs/{run_id}").json()
        return run if run["state_type"] in TERMINAL else None

    return wait_for(finished, f"flow run {run_id} of {parameters} to finish", timeout, 0.5)


# --- collecting what the runs left behind -----------------------------------------------------------


def _paged(api: str, path: str, body: dict, page: int = 200) -> list[dict]:
    rows: list[dict] = []
    while True:
        batch = api_call(api, "POST", path, {**body, "limit": page, "offset": len(rows)}).json()
        rows += batch
        if len(batch) < page:
            return rows


def _collect_prefect(record: Record, api: str, run_ids: list[str], since: datetime) -> None:
    runs = {"flow_runs": {"id": {"any_": run_ids}}}
    for run in _paged(api, "/flow_runs/filter", runs):
        record.add("flow run", f"flow run {run['name']} ({run['id']})", run)
    for task_run in _paged(api, "/task_runs/filter", runs):
        record.add("task run", f"task run {task_run['name']}", task_run)
    for line in _paged(api, "/logs/filter", {"logs": {"flow_run_id": {"any_": run_ids}}}):
        record.add("Prefect log line", f"log of flow run {line['flow_run_id']} ({line['name']}): {line['message'][:60]!r}", line)
    for artifact in _paged(api, "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": run_ids}}}):
        record.add("Prefect artifact", f"artifact {artifact['key'] or artifact['id']} ({artifact['type']})", artifact)
    window = {"occurred": {"since": since.isoformat(), "until": (datetime.now(timezone.utc) + timedelta(minutes=1)).isoformat()}}
    page = api_call(api, "POST", "/events/filter", {"filter": window, "limit": 50}).json()
    while True:
        for event in page["events"]:
            record.add("event", f"event {event['event']} about {event['resource'].get('prefect.resource.id')}", event)
        if not page.get("next_page"):
            break
        page = httpx.get(page["next_page"], timeout=30).raise_for_status().json()


def _collect_mlflow(record: Record, since: datetime, scratch: Path) -> None:
    import mlflow

    client = registry.client()
    experiments = [e.experiment_id for e in client.search_experiments()]
    started = int(since.timestamp() * 1000)
    runs = client.search_runs(experiments, filter_string=f"attributes.start_time >= {started}", max_results=1000)
    for run in runs:
        where = f"MLflow run {run.info.run_name} ({run.info.run_id})"
        record.add("MLflow run", where, {"params": run.data.params, "tags": run.data.tags, "metrics": sorted(run.data.metrics),
                                         "name": run.info.run_name, "artifact_uri": run.info.artifact_uri})
        folder = Path(client.download_artifacts(run.info.run_id, "", str(scratch / run.info.run_id)))
        _add_files(record, "MLflow artifact file", f"{where}: ", folder)
    run_ids = {run.info.run_id for run in runs}
    for model in client.search_logged_models(experiments):
        if model.source_run_id not in run_ids:
            continue
        where = f"MLflow logged model {model.name} ({model.model_id})"
        record.add("MLflow run", where, {"params": model.params, "tags": model.tags, "location": model.artifact_location})
        folder = Path(mlflow.artifacts.download_artifacts(artifact_uri=model.artifact_location, dst_path=str(scratch / model.model_id)))
        _add_files(record, "MLflow artifact file", f"{where}: ", folder)
    registered = client.get_registered_model(MODEL)
    record.add("registered model", f"registered model {MODEL}",
               {"tags": registered.tags, "description": registered.description, "aliases": registered.aliases})
    for version in client.search_model_versions(f"name='{MODEL}'"):
        record.add("registered model", f"{MODEL} version {version.version}", {
            "tags": version.tags, "description": version.description, "source": version.source, "run_link": version.run_link,
        })


def _add_files(record: Record, kind: str, prefix: str, folder: Path, newer_than: float | None = None) -> None:
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if newer_than is None or path.stat().st_mtime >= newer_than:
            record.add(kind, f"{prefix}{path.relative_to(folder)}", path.read_bytes())


def _collect_stack_files(record: Record, home: Path, since: datetime) -> None:
    newer_than = since.timestamp()
    _add_files(record, "service log", "log file ", home / "logs")  # every line, written before the test or not
    for path in sorted(p for p in home.rglob("*") if p.is_file() and p.parent != home / "logs"):
        if path.stat().st_mtime >= newer_than:
            record.add("file under the stack's home", str(path.relative_to(home)), path.read_bytes())


def _collect_s3(record: Record, settings, since: datetime) -> None:
    for item in storage.list_objects(f"s3://{settings.s3_bucket}/", settings=settings):
        if item.last_modified is None or item.last_modified >= since.replace(microsecond=0):
            record.add("S3 object", item.uri, storage.read_bytes(item.uri, settings))


def _collect_slack(record: Record, fake_slack) -> None:
    # Headers are where the token belongs (Authorization: Bearer ...); the messages are what people read.
    for request in fake_slack.requests:
        record.add("Slack message", f"Slack {request['path']}: {json.dumps(request['json'])[:80]}", request["json"])


# --- the positive control ---------------------------------------------------------------------------


def _plant(api: str, settings, fake_slack, deployed, runs: dict[str, dict], mlflow_run_id: str, version: str) -> None:
    """PLANTED once in every kind of place the search reads."""
    run_id = runs["retrain"]["id"]
    now = datetime.now(timezone.utc).isoformat()
    api_call(api, "POST", "/logs/", [{"name": "leanops.test", "level": 20, "message": f"planted {PLANTED}", "timestamp": now, "flow_run_id": run_id}])
    api_call(api, "POST", "/artifacts/", {"key": f"planted-{MODEL}", "type": "markdown", "data": PLANTED, "flow_run_id": run_id})
    event = {"id": str(uuid.uuid4()), "occurred": now, "event": "leanops.test.planted", "payload": {},
             "resource": {"prefect.resource.id": f"leanops.test.{MODEL}", "leanops.label": PLANTED}, "related": []}
    api_call(api, "POST", "/events", [event])
    wait_for_events(api, "leanops.test.planted", f"leanops.test.{MODEL}")
    # A run that never starts (scheduled for tomorrow) carrying it as a parameter.
    tomorrow = (datetime.now(timezone.utc) + timedelta(days=1)).isoformat()
    runs["planted"] = api_call(api, "POST", f"/deployments/{deployed['promote/on-new-challenger']}/create_flow_run", {
        "parameters": {"spec": PLANTED}, "state": {"type": "SCHEDULED", "state_details": {"scheduled_time": tomorrow}},
    }).json()
    client = registry.client()
    client.set_tag(mlflow_run_id, "planted", PLANTED)
    client.log_text(mlflow_run_id, PLANTED, "planted/planted.txt")
    client.set_model_version_tag(MODEL, version, "planted", PLANTED)
    httpx.post(f"{fake_slack.base_url}chat.postMessage", json={"channel": "#planted", "text": PLANTED}, timeout=10).raise_for_status()
    storage.write_bytes(f"s3://{settings.s3_bucket}/planted/{MODEL}.txt", PLANTED.encode(), settings)
    with (settings.home / "logs" / "prefect-worker.log").open("a") as log:
        log.write(f"planted {PLANTED}\n")


# --- the test ---------------------------------------------------------------------------------------


def test_no_secret_reaches_logs_artifacts_events_runs_messages_or_files(deployed, worker, fake_slack, settings, tmp_path):
    api = settings.resolved_prefect_api_url
    since = datetime.now(timezone.utc) - timedelta(seconds=2)
    started = time.monotonic()

    runs = {"retrain": _run_deployment(api, deployed["retrain/on-schedule"], 240, spec=MODEL)}
    assert runs["retrain"]["state_name"] == "Completed", runs["retrain"]["state"]
    [version] = registry.list_versions(MODEL)
    runs["promote"] = _run_deployment(api, deployed["promote/on-new-challenger"], 240, spec=MODEL, version=version.version)
    assert runs["promote"]["state_name"] == "Completed", runs["promote"]["state"]
    assert registry.get_alias(MODEL, registry.CHAMPION).version == version.version
    key = f"{settings.s3_incoming_prefix}{MODEL}/2013-07.parquet"
    storage.write_table(datasets.flights_sample([7], rows_per_month=1200, seed=12), f"s3://{settings.s3_bucket}/{key}", settings)
    [runs["drift-monitor"]] = finished_runs(api, deployed["drift-monitor/on-new-batch"], timeout=240, key=key)
    assert runs["drift-monitor"]["state_name"] == "Completed", runs["drift-monitor"]["state"]
    print(f"\nretrain, promote, drift-monitor on the worker: {time.monotonic() - started:.1f} s")

    # The runs held the secrets: Slack got the sentinel token (promotion and drift alerts) in its header.
    messages = fake_slack.delivered()
    assert len(messages) >= 2, [m.get("text") for m in messages]
    tokens = {r["headers"].get("Authorization") for r in fake_slack.requests}
    assert tokens == {f"Bearer {SECRET_ENV['LEANOPS_SLACK_TOKEN']}"}

    _plant(api, settings, fake_slack, deployed, runs, version.run_id, version.version)
    searched = time.monotonic()
    record = Record()
    run_ids = [run["id"] for run in runs.values()] + [
        run["id"] for deployment in deployed.values() for run in runs_of(api, deployment) if run["id"] not in {r["id"] for r in runs.values()}
    ]
    _collect_prefect(record, api, run_ids, since)
    _collect_mlflow(record, since, tmp_path)
    _collect_slack(record, fake_slack)
    _collect_s3(record, settings, since)
    _collect_stack_files(record, settings.home, since)
    delete_runs(api, [runs.pop("planted")])  # scheduled for tomorrow: no later module's worker may ever start it
    print(f"searched {len(record.entries)} entries in {time.monotonic() - searched:.1f} s: "
          + ", ".join(f"{kind} {record.count(kind)}" for kind in sorted(record.kinds())))

    kinds = {"flow run", "task run", "Prefect log line", "Prefect artifact", "event", "MLflow run", "MLflow artifact file",
             "registered model", "Slack message", "S3 object", "service log", "file under the stack's home"}
    assert record.kinds() == kinds
    assert record.count("Prefect log line") >= 20 and record.count("event") >= 20 and record.count("Slack message") >= 3
    planted_in = {kind for kind, _, _ in record.find(PLANTED)}
    assert planted_in == kinds - {"task run"}, f"the search missed the planted value in {kinds - {'task run'} - planted_in}"

    leaks = {name: record.find(needle) for name, needle in NEEDLES.items()}
    leaks = {name: found for name, found in leaks.items() if found}
    report = "\n".join(
        f"{name}: {len(found)} places ({', '.join(sorted({kind for kind, _, _ in found}))}), first of them:\n" + "\n".join(
            f"  in {kind}: {where}\n    ...{context.replace(NEEDLES[name], f'<{name}>')}..." for kind, where, context in found[:5]
        )
        for name, found in leaks.items()
    )
    assert not leaks, f"secrets found:\n{report}"
