"""Canary serving and the prediction log against the running endpoint (``python -m serving``, a real HTTP
client), and the same app as an AWS Lambda handler invoked with API Gateway v2 / Function URL events.

One model, two versions trained on real flights: v1 is the champion, v2 the challenger with a 10% canary
share. The endpoint writes its prediction log and live summaries to the session's S3 (moto) every second.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import orjson
import pytest
from e2e.test_serving import free_port, scrape, train_version, value
from support import spec_copy, wait_for
from test_serving_lambda import AS_IN_THE_IMAGE, image_env

from leanops import canary, contract, datasets, live, prediction_log, registry, storage
from leanops.serving.requests import request_rows
from leanops.spec import load_spec

# The module trains two versions and starts the endpoint in its first test's setup: minutes on a loaded machine.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

ROOT = Path(__file__).resolve().parents[2]
REQUESTS = 1000


@pytest.fixture(scope="module")
def models(mlflow_server, s3_endpoint, settings, tmp_path_factory):
    storage.ensure_bucket(settings.s3_bucket, settings)
    folder = tmp_path_factory.mktemp("canary-specs")
    name = f"canary-{uuid.uuid4().hex[:8]}"
    spec = load_spec(spec_copy(
        folder, name, contract__min_rows=50, drift__min_rows=100,
        serving={"canary_share": 0.1, "log_sample_share": 0.2},
    ))
    v1 = train_version(spec, seed=31, params={"n_estimators": 20, "max_depth": 3})
    v2 = train_version(spec, seed=32, params={"n_estimators": 30, "max_depth": 3})
    registry.set_alias(name, registry.CHAMPION, v1)
    registry.set_alias(name, registry.CHALLENGER, v2)
    rows = request_rows(datasets.flights_sample([7, 8], rows_per_month=500, seed=6), spec)
    return {"folder": folder, "spec": spec, "name": name, "v1": v1, "v2": v2, "rows": rows}


def serving_env(models) -> dict[str, str]:
    return {
        **os.environ,
        "LEANOPS_SPECS_DIR": str(models["folder"]),
        "LEANOPS_SERVING_ALIAS_CHECK_SECONDS": "3600",
        "LEANOPS_SERVING_FOLLOW_EVENTS": "false",
        "LEANOPS_PREDICTION_LOG_FLUSH_SECONDS": "1",
        "LEANOPS_SERVING_LIVE_PUBLISH_SECONDS": "1",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }


@pytest.fixture(scope="module")
def endpoint(models):
    port = free_port()
    log_path = models["folder"] / "serving.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(  # noqa: S603 - our own module
            [sys.executable, "-m", "serving", "--port", str(port), "--workers", "1"],
            cwd=ROOT, env=serving_env(models), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)

    def both_loaded():
        assert process.poll() is None, log_path.read_text()[-3000:]
        try:
            answer = client.get("/models")
        except httpx.TransportError:
            return False
        return answer.status_code == 200 and answer.json().get(models["name"]) == {"champion": models["v1"], "challenger": models["v2"]}

    try:
        wait_for(both_loaded, "champion and challenger loaded", deadline=240, interval=0.5)
        yield client, process
    finally:
        client.close()
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_a_ten_percent_canary_holds_and_every_answer_is_counted_logged_and_summarised(endpoint, models, settings):
    client, process = endpoint
    name, v1, v2 = models["name"], models["v1"], models["v2"]

    def ask(i: int) -> dict:
        answer = client.post(f"/models/{name}/predict", content=orjson.dumps(models["rows"][i % len(models["rows"])]),
                             headers={"content-type": "application/json"})
        assert answer.status_code == 200, answer.text
        return answer.json()

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(ask, range(REQUESTS)))
    by_version = {v1: 0, v2: 0}
    for a in answers:
        by_version[a["version"]] += 1
    assert sum(by_version.values()) == REQUESTS
    assert 0.07 <= by_version[v2] / REQUESTS <= 0.13, by_version
    assert all(a["alias"] == ("challenger" if a["version"] == v2 else "champion") for a in answers)

    metrics = scrape(client)
    for version, count in by_version.items():
        assert value(metrics, "leanops_serving_requests_total", model=name, version=version, status="200") == count

    # The live summary promote reads says the same, per version and role.
    def summarised():
        summary = live.read_model_summary(name, settings)
        return summary if summary.of(v2, "canary").requests + summary.of(v1, "champion").requests == REQUESTS else None

    summary = wait_for(summarised, "the endpoint's live summary of every request", deadline=30)
    assert summary.of(v2, "canary").requests == by_version[v2] and summary.of(v2, "canary").scores.n == by_version[v2]

    # Stopping flushes the log: exactly the sampled predictions, as batches the contract accepts unlabelled.
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=60)
    ids = [a["predictions"][0]["id"] for a in answers]
    expected = {i for i in ids if canary.in_log_sample(i, name, 0.2)}
    logged: set[str] = set()
    sample_prefix = prediction_log.incoming_log_prefix(name, prediction_log.SAMPLE, settings)
    remainder_prefix = prediction_log.kept_log_prefix(name, prediction_log.REMAINDER, settings)
    objects = storage.list_objects(sample_prefix, settings=settings) + storage.list_objects(remainder_prefix, settings=settings)
    for info in objects:
        frame, fingerprint = storage.read_table(info.uri, settings)
        if info.uri.startswith(sample_prefix):
            assert len(frame) == prediction_log.sample_batch_rows(models["spec"]) == 100
            contract.validate_batch(frame, models["spec"], info.uri, fingerprint, logged=True)
        logged |= set(frame[prediction_log.PREDICTION_ID])
    assert logged == expected and 150 <= len(logged) <= 250


# --- the same app on AWS Lambda --------------------------------------------------------------------------


def http_api_event(method: str, path: str, body: bytes = b"", function_url: bool = False) -> dict:
    """An HTTP API (payload 2.0) event as API Gateway sends it; a Function URL sends the same shape with
    its own domain and, for a JSON body, base64."""
    domain = "abcdef123.lambda-url.us-east-1.on.aws" if function_url else "abc123.execute-api.us-east-1.amazonaws.com"
    encoded = function_url and bool(body)
    return {
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
        "headers": {"content-type": "application/json", "host": domain, "user-agent": "curl/8.5.0", "x-forwarded-proto": "https"},
        "requestContext": {
            "accountId": "123456789012" if not function_url else "anonymous", "apiId": domain.split(".")[0], "domainName": domain,
            "domainPrefix": domain.split(".")[0], "requestId": str(uuid.uuid4()), "routeKey": "$default", "stage": "$default",
            "time": "30/Nov/2026:14:00:00 +0000", "timeEpoch": 1796047200000,
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7", "userAgent": "curl/8.5.0"},
        },
        "body": (base64.b64encode(body).decode() if encoded else body.decode()) if body else None,
        "isBase64Encoded": encoded,
    }


# A fresh interpreter is a cold container; it finds only the libraries the image installs.
INVOKE = AS_IN_THE_IMAGE + """
import json, sys, time
started = time.perf_counter()
from serving.aws_lambda import handler, warm
imported = time.perf_counter()
warm(600)  # a loaded machine may take longer than the handler waits for a real first request
warmed = time.perf_counter()
class Context:
    function_name, aws_request_id, memory_limit_in_mb = "leanops-serving", "req-1", 2048
answers = [handler(event, Context()) for event in json.load(sys.stdin)]
print(json.dumps({"import_s": imported - started, "warm_s": warmed - imported, "answers": answers}))
"""


def test_the_lambda_handler_answers_http_api_and_function_url_events(models):
    name, rows = models["name"], models["rows"]
    events = [
        http_api_event("GET", "/ready"),
        http_api_event("POST", f"/models/{name}/predict", orjson.dumps(rows[:3])),
        http_api_event("POST", f"/models/{name}/predict", orjson.dumps(rows[3]), function_url=True),
        http_api_event("POST", f"/models/{name}/predict", orjson.dumps({**rows[0], "hour": 25}), function_url=True),
    ]
    done = subprocess.run(  # noqa: S603 - our own handler
        [sys.executable, "-c", INVOKE], input=json.dumps(events), capture_output=True, text=True, cwd=ROOT,
        env={**serving_env(models), **image_env(), "LEANOPS_SERVING_ALIAS_CHECK_SECONDS": "60"}, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    ready, batch, single, bad = result["answers"]
    assert ready["statusCode"] == 200 and json.loads(ready["body"])["ready"] is True
    assert batch["statusCode"] == 200 and batch["headers"]["content-type"] == "application/json"
    body = json.loads(batch["body"])
    assert body["version"] in (models["v1"], models["v2"]) and len(body["predictions"]) == 3
    assert single["statusCode"] == 200 and len(json.loads(single["body"])["predictions"]) == 1
    assert bad["statusCode"] == 422 and json.loads(bad["body"])["detail"][0]["loc"] == ["body", 0, "hour"]
