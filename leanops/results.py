"""Typed results passed between lifecycle stages.

Every result that carries data also carries a ``fingerprint``: a short content hash that
identifies it. Cache keys are built from fingerprints, never from the data itself.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import pandas as pd


def combine_fingerprints(*parts: object) -> str:
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()
    return digest[:16]


@dataclass(frozen=True)
class Batch:
    uri: str
    fingerprint: str
    frame: pd.DataFrame = field(repr=False, compare=False)
    sources: tuple[str, ...] = ()
    """The object URIs a batch was assembled from (a retrain window), in order."""

    @property
    def n_rows(self) -> int:
        return len(self.frame)


@dataclass(frozen=True)
class ValidationReport:
    uri: str
    fingerprint: str
    n_rows: int
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class FeatureSet:
    fingerprint: str
    X_train: pd.DataFrame = field(repr=False, compare=False)
    y_train: pd.Series = field(repr=False, compare=False)
    X_valid: pd.DataFrame = field(repr=False, compare=False)
    y_valid: pd.Series = field(repr=False, compare=False)
    X_holdout: pd.DataFrame = field(repr=False, compare=False)
    y_holdout: pd.Series = field(repr=False, compare=False)
    rows_excluded: dict[str, int] = field(default_factory=dict)
    split_description: str = ""

    @property
    def sizes(self) -> dict[str, int]:
        return {"train": len(self.X_train), "valid": len(self.X_valid), "holdout": len(self.X_holdout)}


@dataclass(frozen=True)
class TrainResult:
    fingerprint: str
    model: Any = field(repr=False, compare=False)
    baseline: Any = field(repr=False, compare=False)
    params: dict[str, Any] = field(default_factory=dict)
    feature_importance: dict[str, float] = field(default_factory=dict)
    fit_seconds: float = 0.0
    best_iteration: int | None = None


@dataclass(frozen=True)
class EvalResult:
    primary_metric: str
    model: dict[str, float]
    baseline: dict[str, float]
    champion: dict[str, float] | None = None
    champion_version: str | None = None
    holdout_rows: int = 0

    def table(self) -> list[dict[str, Any]]:
        rows = []
        for metric in self.model:
            row = {"metric": metric, "model": round(self.model[metric], 5), "baseline": round(self.baseline[metric], 5)}
            if self.champion is not None:
                row[f"champion v{self.champion_version}"] = round(self.champion.get(metric, float("nan")), 5)
            rows.append(row)
        return rows


@dataclass(frozen=True)
class TuningResult:
    study_name: str
    best_params: dict[str, Any]
    best_value: float
    default_value: float | None
    n_trials: int
    n_complete: int
    n_failed: int
    n_pruned: int
    mlflow_run_id: str | None = None
    report_uris: dict[str, str] = field(default_factory=dict)
    metric: str = ""
    direction: str = ""
    best_trial: int | None = None
    n_running: int = 0
    """Trials still running or waiting (another worker's, or a crashed worker's on journal storage)."""
    storage: str = ""
    """Where the study lives (password redacted)."""
    trials: pd.DataFrame | None = field(default=None, repr=False, compare=False)
    report_html: str = field(default="", repr=False, compare=False)
    """Self-contained HTML (history, importances, learning curves, trials), readable offline."""

    @property
    def improvement(self) -> float | None:
        """How much better than the default parameters on the validation split (positive = better)."""
        if self.default_value is None:
            return None
        diff = self.best_value - self.default_value
        return diff if self.direction != "minimize" else -diff


@dataclass(frozen=True)
class StudyPlan:
    """A study ready for workers: what is left of the budget, split into one share per worker."""

    study_name: str
    storage: str | None
    """As given (None: each worker uses its settings' storage), so no password travels in results."""
    target_trials: int
    finished_trials: int
    shares: tuple[int, ...]

    @property
    def remaining(self) -> int:
        return sum(self.shares)


@dataclass(frozen=True)
class TrialBatchResult:
    """What one tuning worker did."""

    study_name: str
    worker_index: int
    n_trials: int
    n_complete: int
    n_failed: int
    n_pruned: int
    seconds: float


@dataclass(frozen=True)
class Lineage:
    git_commit: str
    data_uri: str
    data_fingerprint: str
    spec_hash: str
    leanops_version: str
    flow_run_id: str | None = None
    data_sources: tuple[str, ...] = ()

    def as_tags(self) -> dict[str, str]:
        tags = {
            "leanops.git_commit": self.git_commit,
            "leanops.data_uri": self.data_uri,
            "leanops.data_fingerprint": self.data_fingerprint,
            "leanops.spec_hash": self.spec_hash,
            "leanops.version": self.leanops_version,
            "leanops.flow_run_id": self.flow_run_id or "",
        }
        if self.data_sources:
            tags["leanops.data_sources"] = ",".join(self.data_sources)[:4900]
        return tags


@dataclass(frozen=True)
class RegistrationResult:
    model_name: str
    version: str
    run_id: str
    model_uri: str
    created: bool
    """False when an identical training (same data, spec, params, code) was already registered."""
    run_url: str = ""
    alias: str = "challenger"
