"""The endpoint's logic without a server: request rows against the contract, answers per row,
micro-batching, and the Grafana dashboard reading only metrics the endpoint exports."""

from __future__ import annotations

import asyncio
import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import orjson
import pytest

from leanops import datasets
from leanops.serving.batching import MicroBatcher
from leanops.serving.metrics import ServingMetrics
from leanops.serving.models import describe_outputs
from leanops.serving.requests import InvalidRequest, RowChecker, parse_rows, request_rows

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def rows(spec):
    return request_rows(datasets.flights_sample([7], rows_per_month=30, seed=5), spec)


def refused(body: bytes, spec, max_rows: int = 100) -> list[dict]:
    with pytest.raises(InvalidRequest) as caught:
        parse_rows(body, RowChecker.for_spec(spec), max_rows)
    return [p.as_detail() for p in caught.value.problems]


def test_real_rows_pass_as_one_row_or_a_batch(rows, spec):
    checker = RowChecker.for_spec(spec)
    one, is_batch = parse_rows(orjson.dumps(rows[0]), checker, 100)
    assert one == [rows[0]] and not is_batch
    many, is_batch = parse_rows(orjson.dumps(rows), checker, 100)
    assert many == rows and is_batch
    assert {"hour", "carrier", "time_hour", "temp"} <= rows[0].keys() and "dep_delay" not in rows[0]


def test_every_bad_value_of_a_batch_is_named_by_row_column_and_rule(rows, spec):
    bad = [rows[0], {**rows[1], "hour": 24.5, "origin": "XYZ"}, {**rows[2], "time_hour": "yesterday", "temp": None}]
    del bad[2]["dest"]
    problems = refused(orjson.dumps(bad), spec)
    assert [(p["loc"], p["type"]) for p in problems] == [
        (["body", 1, "hour"], "dtype"),
        (["body", 1, "origin"], "allowed"),
        (["body", 2, "dest"], "missing"),
        (["body", 2, "time_hour"], "dtype"),
    ]  # temp may be missing (its contract allows 5% nulls); an unseen carrier only counts as drift, not here
    assert problems[0]["msg"] == "row 1: column 'hour' must be an integer, found 24.5"


def test_bodies_that_are_not_rows_are_refused(rows, spec):
    assert refused(b"[1, 2", spec)[0]["type"] == "json_invalid"
    assert refused(b"[]", spec)[0]["type"] == "empty"
    assert refused(b"[3]", spec)[0]["msg"] == "row 0 must be a JSON object of column: value, found int"
    assert refused(orjson.dumps(rows[:3]), spec, max_rows=2)[0]["type"] == "too_many_rows"
    assert refused(orjson.dumps({**rows[0], "carrier": True}), spec)[0]["type"] == "dtype"


def test_answers_per_row_for_each_task(spec):
    binary = describe_outputs(np.array([[0.8, 0.2], [0.3, 0.7]]), spec)
    assert [(d["score"], d["label"]) for d in binary] == [(0.2, "negative"), (0.7, "positive")]
    assert binary[0]["output"] == [0.8, 0.2]
    multi = describe_outputs(np.array([[0.1, 0.6, 0.2, 0.1]]), spec.model_copy(update={"task": "multiclass", "target": spec.target.model_copy(update={"classes": ["FF", "SL", "CU", "CH"]})}))
    assert (multi[0]["label"], multi[0]["score"]) == ("SL", 0.6)
    regression = describe_outputs(np.array([12.5]), spec.model_copy(update={"task": "regression"}))
    assert regression == [{"output": 12.5, "score": 12.5, "label": None}]


def test_requests_arriving_during_a_prediction_are_scored_together():
    calls: list[int] = []
    release = threading.Event()

    def predict(batch):
        calls.append(len(batch))
        if len(calls) == 1:
            release.wait(10)  # the first call holds the model while three more requests arrive
        return np.array([row["x"] * 10 for row in batch])

    async def scenario():
        batcher = MicroBatcher(predict, ThreadPoolExecutor(1), max_rows=100)
        first = asyncio.create_task(batcher.predict([{"x": 1}]))
        await asyncio.sleep(0)  # let the first batch start
        while not calls:
            await asyncio.sleep(0.01)
        rest = [asyncio.create_task(batcher.predict([{"x": i}, {"x": i + 100}])) for i in (2, 3, 4)]
        await asyncio.sleep(0.05)
        release.set()
        return await first, await asyncio.gather(*rest)

    first, rest = asyncio.run(scenario())
    assert calls == [1, 6]
    assert first.tolist() == [10]
    assert [r.tolist() for r in rest] == [[20, 1020], [30, 1030], [40, 1040]]


def test_a_failed_prediction_fails_only_the_requests_of_its_batch():
    def predict(batch):
        if any(row.get("boom") for row in batch):
            raise ValueError("boom")
        return np.zeros(len(batch))

    async def scenario():
        batcher = MicroBatcher(predict, ThreadPoolExecutor(1))
        with pytest.raises(ValueError, match="boom"):
            await batcher.predict([{"boom": True}])
        return await batcher.predict([{"x": 1}])

    assert asyncio.run(scenario()).tolist() == [0.0]


def test_the_dashboard_reads_only_metrics_the_endpoint_exports():
    dashboard = json.loads((ROOT / "infra" / "grafana" / "dashboards" / "leanops-serving.json").read_text())
    exported = set()
    for family in ServingMetrics().registry.collect():
        exported |= {sample_name for sample_name in (family.name, f"{family.name}_total", f"{family.name}_bucket", f"{family.name}_sum", f"{family.name}_count")}
    expressions = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {name for expr in expressions for name in re.findall(r"\bleanops_serving_[a-z_]+", expr)}
    assert used and used <= exported, used - exported
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("latency", "error rate", "per version", "distribution"):
        assert topic in titles
