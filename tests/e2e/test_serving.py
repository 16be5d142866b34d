"""The online endpoint against a real HTTP client: uvicorn running ``python -m serving`` on a free port,
serving models registered in the test session's MLflow server, following Prefect's events.

Two versions of one model are trained on real flights (small, ~10 s); a second spec has no version at
all. The endpoint checks aliases only every hour here, so a switch within the test's deadline can only
come from the promotion event (the check itself is tested in-process below).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import orjson
import pandas as pd
import pytest

from leanops import datasets, events, registration, registry
from leanops.serving.requests import request_rows
from leanops.spec import load_spec
from support import spec_copy, stop_process_group, wait_for

# The first test also trains two models and starts the endpoint (imports MLflow, pandas, Prefect): about
# 30 s on an idle machine, over 10 minutes seen here with a load average of 17.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1500)]

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def train_version(spec, seed: int, params: dict) -> str:
    """One registered version of ``spec``'s model, trained and registered by the library (no flow run)."""
    from leanops import features, lineage, modeling
    from leanops.results import Batch

    frame = datasets.flights_sample(range(1, 7), rows_per_month=400, seed=seed)
    uri = f"memory://serving-tests/{seed}"
    feature_set = features.build_feature_set(Batch(uri, f"fp-{seed}", frame), spec)
    fitted = modeling.fit_models(feature_set, spec, params)
    evaluation = modeling.evaluate(fitted, feature_set, spec)
    run_lineage = lineage.build_lineage(uri, f"fp-{seed}", spec.spec_hash, None)
    return registration.register_training(spec, fitted, evaluation, feature_set, run_lineage, f"serving-{seed}-{uuid.uuid4().hex}").version


@pytest.fixture(scope="module")
def models(mlflow_server, prefect_server, tmp_path_factory):
    folder = tmp_path_factory.mktemp("serving-specs")
    name = f"serving-{uuid.uuid4().hex[:8]}"
    spec = load_spec(spec_copy(folder, name))
    unborn = load_spec(spec_copy(folder, f"unborn-{uuid.uuid4().hex[:8]}"))
    v1 = train_version(spec, seed=21, params={"n_estimators": 20, "max_depth": 3})
    v2 = train_version(spec, seed=22, params={"n_estimators": 40, "max_depth": 4})
    registry.set_alias(name, registry.CHAMPION, v1)
    rows = request_rows(datasets.flights_sample([7], rows_per_month=200, seed=5), spec)
    return {"folder": folder, "spec": spec, "name": name, "unborn": unborn.name, "v1": v1, "v2": v2, "rows": rows}


@contextlib.contextmanager
def running_endpoint(argv: list[str], folder: Path, log_name: str):
    """The endpoint started by ``argv`` serving the specs of ``folder``, ready; stopped (its process group) after."""
    log_path = folder / log_name
    env = {
        **os.environ,
        "LEANOPS_SPECS_DIR": str(folder),
        "LEANOPS_SERVING_ALIAS_CHECK_SECONDS": "3600",
        "LEANOPS_HOME": str(folder / "home"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    port = free_port()
    with log_path.open("ab") as log:
        process = subprocess.Popen(  # noqa: S603 - our own module
            [*argv, "--port", str(port)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)

    def ready():
        assert process.poll() is None, log_path.read_text()[-3000:]
        try:
            return client.get("/ready").status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(ready, "the endpoint to be ready", deadline=600, interval=0.5)
        yield client
    finally:
        client.close()
        stop_process_group(process)


@pytest.fixture(scope="module")
def endpoint(models):
    with running_endpoint([sys.executable, "-m", "serving", "--workers", "1"], models["folder"], "serving.log") as client:
        yield client


def post(client: httpx.Client, name: str, body) -> httpx.Response:
    return client.post(f"/models/{name}/predict", content=orjson.dumps(body), headers={"content-type": "application/json"})


def scrape(client: httpx.Client) -> dict[tuple[str, tuple], float]:
    """/metrics as {(sample name, sorted labels): value}, parsed by prometheus-client's own parser."""
    from prometheus_client.parser import text_string_to_metric_families

    samples = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_ready_with_the_champion_loaded_and_a_model_without_one_answers_503(endpoint, models):
    body = endpoint.get("/ready").json()
    assert body["ready"] is True
    assert body["serving"] == {f"{models['name']}@champion": models["v1"]}
    refused = post(endpoint, models["unborn"], models["rows"][0])
    assert refused.status_code == 503
    assert "no champion" in refused.json()["detail"]
    assert endpoint.get("/health").json() == {"status": "ok"}


def test_predictions_equal_mlflow_pyfunc_on_the_same_rows(endpoint, models):
    import mlflow.pyfunc

    rows = models["rows"][:60]
    answer = post(endpoint, models["name"], rows)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["version"] == models["v1"] and body["alias"] == "champion"
    served = np.asarray([p["output"] for p in body["predictions"]])
    # As a pyfunc user passes them: numbers as the signature's doubles (MLflow refuses int64 -> float64).
    frame = pd.DataFrame(rows).astype({column: "float64" for column in models["spec"].numeric_features})
    expected = np.asarray(mlflow.pyfunc.load_model(f"models:/{models['name']}/{models['v1']}").predict(frame))
    np.testing.assert_allclose(served, expected, rtol=1e-6, atol=1e-7)
    assert [p["score"] for p in body["predictions"]] == pytest.approx(expected[:, 1].tolist(), rel=1e-6)
    ids = [p["id"] for p in body["predictions"]]
    assert len(set(ids)) == len(rows) and all(uuid.UUID(i) for i in ids)
    one = post(endpoint, models["name"], rows[7]).json()
    assert len(one["predictions"]) == 1
    np.testing.assert_allclose(one["predictions"][0]["output"], expected[7], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    ("change", "column", "rule", "words"),
    [
        ({"hour": 25}, "hour", "range", "is 25, outside [0, 23]"),
        ({"distance": "far"}, "distance", "dtype", "must be a number"),
        ({"origin": "XYZ"}, "origin", "allowed", "not a known category"),
        ({"carrier": None}, "carrier", "not_null", "must not be null"),
        ({"carrier": ...}, "carrier", "missing", "missing column 'carrier'"),
    ],
)
def test_a_malformed_row_gets_a_422_naming_column_and_rule(endpoint, models, change, column, rule, words):
    good = models["rows"][0]
    bad = {k: v for k, v in {**good, **change}.items() if v is not ...}
    answer = post(endpoint, models["name"], [good, bad])
    assert answer.status_code == 422, answer.text
    [problem] = answer.json()["detail"]
    assert problem["loc"] == ["body", 1, column]
    assert problem["type"] == rule
    assert words in problem["msg"] and column in problem["msg"] and "row 1" in problem["msg"]


def test_a_body_that_is_not_json_gets_a_422(endpoint, models):
    answer = endpoint.post(f"/models/{models['name']}/predict", content=b"{hour: 3", headers={"content-type": "application/json"})
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["type"] == "json_invalid"


def test_metrics_count_exactly_the_requests_errors_and_versions(endpoint, models):
    name, v1 = models["name"], models["v1"]
    before = scrape(endpoint)
    for row in models["rows"][:7]:
        assert post(endpoint, name, row).status_code == 200
    assert post(endpoint, name, models["rows"][10:15]).status_code == 200
    for _ in range(3):
        assert post(endpoint, name, {**models["rows"][0], "hour": -1}).status_code == 422
    assert post(endpoint, "no-such-model", models["rows"][0]).status_code == 404
    after = scrape(endpoint)

    def delta(sample, **labels):
        return value(after, sample, **labels) - value(before, sample, **labels)

    assert delta("leanops_serving_requests_total", model=name, version=v1, status="200") == 8
    assert delta("leanops_serving_requests_total", model=name, version="", status="422") == 3
    assert delta("leanops_serving_errors_total", model=name, reason="invalid_input") == 3
    assert delta("leanops_serving_errors_total", model="", reason="unknown_model") == 1
    assert delta("leanops_serving_request_duration_seconds_count", model=name, version=v1) == 8
    rows_by_label = sum(
        delta("leanops_serving_predictions_total", model=name, version=v1, alias="champion", role="answer", label=label)
        for label in ("positive", "negative")
    )
    assert rows_by_label == 12
    assert delta("leanops_serving_prediction_score_count", model=name, version=v1, alias="champion", role="answer") == 12
    # Every row went through the fast path (checked equal to pyfunc when the version loaded), none through pyfunc.
    assert delta("leanops_serving_scored_rows_total", model=name, version=v1, path="fast") == 12
    assert delta("leanops_serving_scored_rows_total", model=name, version=v1, path="pyfunc") == 0
    assert value(after, "leanops_serving_model_version", model=name, alias="champion", version=v1) == 1


def test_a_promotion_switches_the_served_version_with_no_failed_request(endpoint, models, prefect_server):
    from deployments.prefect_events import PrefectEvents
    from leanops.bridge import event_document

    name, v1, v2 = models["name"], models["v1"], models["v2"]
    answers: list[tuple[int, str | None]] = []
    by_client: list[list[str | None]] = [[], []]
    stop = threading.Event()

    def fire(index: int) -> None:
        with httpx.Client(base_url=str(endpoint.base_url), timeout=30) as client:
            i = 0
            while not stop.is_set():
                response = post(client, name, models["rows"][i % len(models["rows"])])
                answers.append((response.status_code, response.json().get("version")))
                by_client[index].append(response.json().get("version"))
                i += 1

    clients = [threading.Thread(target=fire, args=(i,)) for i in range(2)]
    for thread in clients:
        thread.start()
    try:
        wait_for(lambda: len(answers) >= 20, "requests answered by v1 before the promotion", deadline=60)
        registry.set_alias(name, registry.PREVIOUS_CHAMPION, v1)
        registry.set_alias(name, registry.CHAMPION, v2)
        promoted = events.model_promoted(name, v2, v1, "roc_auc", 0.7, 0.69, "test", "serving test", "", uuid.uuid4().hex)
        PrefectEvents(prefect_server).post([event_document(promoted)])
        switched_at = wait_for(lambda: next((i for i, a in enumerate(answers) if a[1] == v2), None), "an answer from v2", deadline=90)
        wait_for(lambda: len(answers) >= switched_at + 40 and all(v2 in c and len(c) - c.index(v2) >= 10 for c in by_client),
                 "requests after the switch, from each client", deadline=60)
    finally:
        stop.set()
        for thread in clients:
            thread.join(60)
    failed = [a for a in answers if a[0] != 200]
    assert not failed, failed[:5]
    assert {a[1] for a in answers[:20]} == {v1}
    # Each client's requests are sequential: once one of its requests got v2, its later ones never get v1.
    # (Across clients the order of answers proves nothing: a request that took v1 just before the swap may
    # be answered after any number of the other client's v2 answers.)
    for versions in by_client:
        switch = versions.index(v2)
        assert set(versions[:switch]) == {v1} and set(versions[switch:]) == {v2}, versions
    samples = scrape(endpoint)
    assert value(samples, "leanops_serving_reloads_total", model=name, alias="champion", trigger=events.MODEL_PROMOTED, outcome="loaded") == 1
    assert value(samples, "leanops_serving_model_version", model=name, alias="champion", version=v2) == 1
    assert value(samples, "leanops_serving_model_version", model=name, alias="champion", version=v1) == 0
    assert endpoint.get("/ready").json()["serving"] == {f"{name}@champion": v2}


def test_without_events_the_alias_check_follows_a_move(models, settings):
    """The fallback alone (no event stream): the alias is read every half second and the move is loaded."""
    from leanops.serving.metrics import ServingMetrics
    from leanops.serving.service import PredictionService

    name = models["name"]
    current = registry.alias_version(name, registry.CHAMPION)
    other = models["v2"] if current == models["v1"] else models["v1"]
    metrics = ServingMetrics()
    service = PredictionService({name: models["spec"]}, settings.model_copy(update={"serving_alias_check_seconds": 0.5}), metrics=metrics)
    service.start()
    try:
        wait_for(lambda: service.follower.ready()[0], "the champion loaded in-process", deadline=180)
        assert service.cache.get(name).version == current
        registry.set_alias(name, registry.CHAMPION, other)
        wait_for(lambda: service.cache.get(name).version == other, f"v{other} loaded by the alias check", deadline=180)
    finally:
        service.stop()
    loaded = metrics.reloads.labels(name, "champion", "poll", "loaded")._value.get()
    assert loaded == 1


def test_leanops_serve_with_two_workers_counts_every_worker_in_one_scrape(models):
    """`leanops serve --workers 2`: two processes on one port, and /metrics (whichever answers) adds both up."""
    name = models["name"]
    argv = [str(Path(sys.executable).parent / "leanops"), "serve", "--workers", "2"]
    with running_endpoint(argv, models["folder"], "serving-2.log") as client:
        statuses = []
        # /ready answered from one worker; the other may still be loading (503 until then): count both.
        while statuses.count(200) < 30:
            # A new connection each time: the kernel hands connections to either worker, a kept-alive one to one.
            row = models["rows"][len(statuses) % len(models["rows"])]
            statuses.append(httpx.post(f"{str(client.base_url).rstrip('/')}/models/{name}/predict", json=row, headers={"connection": "close"}, timeout=30).status_code)
            assert len(statuses) < 2000 and set(statuses) <= {200, 503}, statuses[-5:]
        samples = scrape(client)
    champion = registry.alias_version(name, registry.CHAMPION)
    assert value(samples, "leanops_serving_requests_total", model=name, version=champion, status="200") == 30
    assert value(samples, "leanops_serving_requests_total", model=name, version="", status="503") == statuses.count(503)
