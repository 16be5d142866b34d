"""A second real data set, different in kind, through retrain -> promote -> drift-monitor with no code of
its own: only ``specs/kershaw-pitch-type.yaml``. Real Prefect server, MLflow server and moto's S3.

Clayton Kershaw's 3,402 pitches of 2013 (Stat2Data): a multiclass target with string labels (FF, SL,
CU, CH) and an ISO time column, landed as monthly batches (450-640 pitches each). The champion learns
April-June; measured with it: holdout log loss 0.04 (baseline 0.05), every pitch type found, and
September's mix of pitches is its holdout's (no prediction drift), while a batch in which he all but
stopped throwing fastballs moves the predicted class shares well past the threshold.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from leanops import datasets, events, registry, storage
from support import wait_for_events

pytestmark = pytest.mark.e2e

MODEL = "pitches-e2e"
SPEC = Path(__file__).resolve().parents[2] / "specs" / "kershaw-pitch-type.yaml"
CLASSES = ["FF", "SL", "CU", "CH"]


@pytest.fixture(scope="module")
def season(stack, tmp_path_factory):
    """The pitches landed as monthly batches; the spec as written, under this test's model name."""
    data = yaml.safe_load(SPEC.read_text())
    data["name"] = MODEL
    spec_path = tmp_path_factory.mktemp("second-model") / f"{MODEL}.yaml"
    spec_path.write_text(yaml.safe_dump(data))
    pitches = datasets.rdataset("Stat2Data", "Kershaw")
    batches = datasets.write_batches(pitches, "Time", f"s3://{stack.s3_bucket}/landed/{MODEL}/")
    return {"spec": str(spec_path), "batches": batches, "pitches": pitches, "bucket": stack.s3_bucket}


@pytest.fixture(scope="module")
def champion(season):
    """Retrain on April-June (one prefix: the window), then promote through the gates."""
    from flows.promote import promote
    from flows.retrain import retrain

    window = f"s3://{season['bucket']}/training/{MODEL}/"
    for month in ("2013-04", "2013-05", "2013-06"):
        storage.write_table(storage.read_table(season["batches"][month])[0], f"{window}{month}.parquet")
    registration = retrain(spec=season["spec"], batch_uri=window)
    change = promote(spec=season["spec"])
    return {"registration": registration, "change": change}


def test_the_multiclass_model_is_registered_with_its_metrics_and_serves_class_probabilities(champion):
    registration = champion["registration"]
    assert registration.created
    info = registry.get_version(MODEL, registration.version)
    assert {"log_loss", "accuracy", "macro_f1", "roc_auc_ovr", "baseline_log_loss"} <= info.metrics.keys()
    assert info.metrics["log_loss"] < info.metrics["baseline_log_loss"] and info.metrics["accuracy"] > 0.95
    assert info.tags["leanops.primary_metric"] == "log_loss"

    served = registry.load_pyfunc(info)  # as `mlflow models serve` loads it
    example = registry.load_input_example(info)
    probabilities = np.asarray(served.predict(example))
    assert probabilities.shape == (len(example), len(CLASSES)) and np.allclose(probabilities.sum(axis=1), 1.0)


def test_the_first_champion_passes_the_absolute_gates_on_multiclass_metrics(champion, stack):
    change = champion["change"]
    assert (change.action, change.version, change.champion_before) == ("promoted", champion["registration"].version, None)
    assert registry.get_alias(MODEL, registry.CHAMPION).version == change.version
    import json

    ledger = json.loads(registry.get_version(MODEL, change.version).tags["leanops.promotion.ledger"])
    assert {row["gate"] for row in ledger} == {"smoke_test", "latency", "min_primary", "beats_baseline"}
    assert all(row["result"] == "pass" for row in ledger) and {row["metric"] for row in ledger} >= {"log_loss"}
    found = wait_for_events(stack.resolved_prefect_api_url, events.MODEL_PROMOTED, events.model_resource_id(MODEL))
    assert found[0]["payload"]["version"] == change.version


def test_a_later_month_is_checked_on_its_predicted_pitch_mix_and_its_recall_per_pitch_type(champion, season):
    from flows.drift_monitor import drift_monitor

    outcome = drift_monitor(spec=season["spec"], batch_uri=season["batches"]["2013-09"])

    assert outcome.champion_version == champion["change"].version
    result = outcome.drift
    assert result.prediction_drift is False and result.prediction_drift_score < 0.1
    performance = result.performance
    assert performance is not None and performance.metric == "log_loss" and not performance.degraded
    assert list(performance.per_class_recall) == CLASSES and min(performance.per_class_recall.values()) > 0.5
    assert performance.n_rows == 448


def test_a_batch_with_another_pitch_mix_drifts_in_its_predicted_classes(champion, season):
    from flows.drift_monitor import drift_monitor

    later = season["pitches"][season["pitches"]["Time"] >= "2013-07"].reset_index(drop=True)
    fewer_fastballs = later[(later["PitchType"] != "FF") | (later.index % 10 == 0)]
    uri = storage.write_table(fewer_fastballs, f"s3://{season['bucket']}/checks/{MODEL}/fewer-fastballs.parquet")

    outcome = drift_monitor(spec=season["spec"], batch_uri=uri)

    assert outcome.status == "drift" and outcome.drift.prediction_drift
    assert "predicted class shares drifted" in outcome.drift.reason
    assert outcome.drift.prediction_drift_score > 0.2


def test_a_challenger_is_judged_against_the_champion_on_every_multiclass_metric(champion, season):
    """Last in the module: it may change the champion. The window moves on a month (May-July)."""
    import json

    from flows.promote import promote
    from flows.retrain import retrain

    window = f"s3://{season['bucket']}/training/{MODEL}/"
    storage.write_table(storage.read_table(season["batches"]["2013-07"])[0], f"{window}2013-07.parquet")
    challenger = retrain(spec=season["spec"], batch_uri=window)

    change = promote(spec=season["spec"])

    assert challenger.created and change.version == challenger.version and change.champion_before == champion["change"].version
    ledger = json.loads(registry.get_version(MODEL, challenger.version).tags["leanops.promotion.ledger"])
    judged = {(row["gate"], row["metric"]) for row in ledger}
    assert {("primary_improvement", "log_loss"), ("guardrail", "macro_f1"), ("guardrail", "roc_auc_ovr")} <= judged
    assert {"segment BatterHand=L", "segment BatterHand=R"} <= {row["gate"] for row in ledger}
    assert change.action == ("promoted" if all(row["result"] != "FAIL" for row in ledger) else "rejected")
