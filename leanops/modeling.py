"""Build, fit and evaluate models: XGBoost (hist) in a scikit-learn pipeline, plus a baseline it must beat.

Both pipelines are ``features`` (``leanops.features.spec_columns``: raw batch columns -> typed, derived and
encoded features) then ``model``, made only of scikit-learn and XGBoost classes: a logged model needs no leanops.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    f1_score,
    log_loss,
    mean_absolute_error,
    r2_score,
    roc_auc_score,
    root_mean_squared_error,
)
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from leanops.features import class_names, feature_order, spec_columns
from leanops.results import EvalResult, FeatureSet, TrainResult, combine_fingerprints
from leanops.spec import Spec

MODELING_VERSION = "2"  # bump when the model recipe changes: invalidates cached fits

DEFAULT_XGB_PARAMS: dict[str, Any] = {"n_estimators": 300, "max_depth": 6, "learning_rate": 0.1}


def xgb_params(spec: Spec, params: dict[str, Any] | None = None) -> dict[str, Any]:
    merged = {**DEFAULT_XGB_PARAMS, **spec.model.params, **(params or {})}
    merged.update(tree_method="hist", random_state=spec.split.seed)
    if spec.task == "multiclass":
        # One probability per class of target.classes, in its order (the target codes 0..k-1).
        merged.update(objective="multi:softprob", num_class=len(spec.target.classes))
    return merged


def _ordinal() -> list[tuple[str, OrdinalEncoder]]:
    # Ordinal codes are enough for trees; unseen or missing categories get -1 rather than failing a prediction.
    return [("encode", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-1, dtype=np.float32))]


def build_model(spec: Spec, params: dict[str, Any] | None = None, n_jobs: int | None = None) -> Pipeline:
    from xgboost import XGBClassifier, XGBRegressor

    estimator_cls = XGBClassifier if spec.is_classifier else XGBRegressor
    estimator = estimator_cls(**xgb_params(spec, params), n_jobs=n_jobs)
    return Pipeline([("features", spec_columns(spec, categorical=_ordinal())), ("model", estimator)])


def build_baseline(spec: Spec) -> Pipeline:
    if spec.model.baseline == "dummy":
        estimator = DummyClassifier(strategy="prior") if spec.is_classifier else DummyRegressor()
        return Pipeline([("features", spec_columns(spec, categorical=_ordinal())), ("model", estimator)])
    columns = spec_columns(
        spec,
        numeric=[("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())],
        categorical=[
            ("impute", SimpleImputer(strategy="constant", fill_value="__missing__")),
            ("onehot", OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=20)),
        ],
    )
    # lbfgs fits a multinomial model when there are more than two classes.
    estimator = LogisticRegression(max_iter=300) if spec.is_classifier else Ridge()
    return Pipeline([("features", columns), ("model", estimator)])


def fit_models(features: FeatureSet, spec: Spec, params: dict[str, Any] | None = None) -> TrainResult:
    """Fit the model and the baseline on all pre-holdout data (train + validation)."""
    X = pd.concat([features.X_train, features.X_valid])
    y = pd.concat([features.y_train, features.y_valid])
    started = time.perf_counter()
    model = build_model(spec, params).fit(X, y)
    fit_seconds = time.perf_counter() - started
    baseline = build_baseline(spec).fit(X, y)
    booster_importance = model.named_steps["model"].feature_importances_
    names = [feature.name for feature in feature_order(spec)]  # one encoded column per feature, in this order
    importance = {str(n): float(v) for n, v in sorted(zip(names, booster_importance), key=lambda kv: -kv[1])}
    final_params = xgb_params(spec, params)
    return TrainResult(
        fingerprint=combine_fingerprints(features.fingerprint, sorted(final_params.items()), MODELING_VERSION),
        model=model,
        baseline=baseline,
        params=final_params,
        feature_importance=importance,
        fit_seconds=fit_seconds,
    )


def predict_scores(model: Any, X: pd.DataFrame, spec: Spec) -> np.ndarray:
    """Positive-class probability (binary), one probability per class in ``target.classes`` order
    (multiclass: rows x classes), or the prediction (regression)."""
    if spec.task == "binary":
        return np.asarray(model.predict_proba(X))[:, 1]
    if spec.task == "multiclass":
        return np.asarray(model.predict_proba(X), dtype=float)
    return np.asarray(model.predict(X), dtype=float)


def predicted_classes(scores: np.ndarray, spec: Spec) -> np.ndarray:
    """The class each row is predicted to be: the most probable one (multiclass), or probability >= 0.5 (binary)."""
    if spec.task == "multiclass":
        return np.asarray(scores).argmax(axis=1)
    return (np.asarray(scores) >= 0.5).astype("int64")


def pyfunc_output(spec: Spec) -> dict[str, Any]:
    """What a logged model's pyfunc ``predict`` returns, for its MLmodel metadata: the label encoding lives
    in leanops (``features.make_target``), so the model itself says what its output columns are."""
    target = spec.target
    if spec.task == "regression":
        return {"task": "regression", "output": f"one number per row: the predicted {target.name} ({target.source})"}
    if spec.task == "multiclass":
        return {"task": "multiclass", "classes": list(target.classes),
                "output": f"one row per input row: the probability of each class of {target.name}, in the order of classes"}
    if target.positive_when_gt is not None:
        positive = f"{target.source} > {target.positive_when_gt:g}"
    elif target.positive is not None:
        positive = f"{target.source} in {list(target.positive)}"
    else:
        positive = f"{target.source} is true (1)"
    return {"task": "binary", "classes": ["negative", "positive"], "positive_means": positive,
            "output": f"one row per input row: [probability of negative, probability of positive] for {target.name}"}


def _roc_auc_ovr(y: np.ndarray, probabilities: np.ndarray) -> float:
    """One-vs-rest ROC AUC, macro-averaged over the classes present in ``y`` (an absent class has no positives)."""
    present = np.unique(y)
    return float(np.mean([roc_auc_score(y == code, probabilities[:, code]) for code in present]))


def score(y_true: pd.Series, scores: np.ndarray, spec: Spec) -> dict[str, float]:
    """The spec's metrics for one set of predictions. One place computes metrics for training and promotion."""
    y = np.asarray(y_true)
    if spec.task == "binary":
        if len(np.unique(y)) < 2:
            raise ValueError("cannot score a binary model on a holdout with a single class")
        clipped = np.clip(scores, 1e-7, 1 - 1e-7)
        return {
            "roc_auc": float(roc_auc_score(y, scores)),
            "pr_auc": float(average_precision_score(y, scores)),
            "log_loss": float(log_loss(y, clipped, labels=[0, 1])),
            "accuracy": float(accuracy_score(y, scores >= 0.5)),
        }
    if spec.task == "multiclass":
        if len(np.unique(y)) < 2:
            raise ValueError("cannot score a multiclass model on rows of a single class")
        probabilities = np.asarray(scores, dtype=float)
        predicted = predicted_classes(probabilities, spec)
        clipped = np.clip(probabilities, 1e-7, 1.0)
        return {
            "log_loss": float(log_loss(y, clipped / clipped.sum(axis=1, keepdims=True), labels=list(range(probabilities.shape[1])))),
            "accuracy": float(accuracy_score(y, predicted)),
            "macro_f1": float(f1_score(y, predicted, average="macro", zero_division=0)),
            "roc_auc_ovr": _roc_auc_ovr(y, probabilities),
        }
    return {
        "rmse": float(root_mean_squared_error(y, scores)),
        "mae": float(mean_absolute_error(y, scores)),
        "r2": float(r2_score(y, scores)),
    }


def per_class_recall(y_true: pd.Series, scores: np.ndarray, spec: Spec) -> dict[str, float]:
    """Recall of each class present in ``y_true``, by class name: which classes a model stopped finding."""
    if not spec.is_classifier:
        return {}
    y = np.asarray(y_true)
    predicted = predicted_classes(scores, spec)
    names = class_names(spec)
    return {names[int(code)]: float(np.mean(predicted[y == code] == code)) for code in np.unique(y)}


def evaluate(train: TrainResult, features: FeatureSet, spec: Spec, champion: Any = None, champion_version: str | None = None) -> EvalResult:
    X, y = features.X_holdout, features.y_holdout
    champion_metrics = score(y, predict_scores(champion, X, spec), spec) if champion is not None else None
    return EvalResult(
        primary_metric=spec.metric.primary,
        model=score(y, predict_scores(train.model, X, spec), spec),
        baseline=score(y, predict_scores(train.baseline, X, spec), spec),
        champion=champion_metrics,
        champion_version=champion_version,
        holdout_rows=len(X),
    )


def is_better(spec: Spec, metric: str, candidate: float, reference: float) -> bool:
    return candidate > reference if spec.metric.direction(metric) == "maximize" else candidate < reference
