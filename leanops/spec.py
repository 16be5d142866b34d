"""The model spec: what a team writes once per model, as YAML.

A spec names the data, the target, the features and their kinds, the data contract,
metrics, gates and policies. Adding a model or a data set is a new spec, not new code.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from leanops.errors import SpecError
from leanops.serving_spec import ServingSpec

TaskType = Literal["binary", "multiclass", "regression"]
FeatureKind = Literal["numeric", "categorical"]
Direction = Literal["maximize", "minimize"]
ColumnDtype = Literal["integer", "float", "number", "string", "datetime", "boolean"]

CLASSIFICATION_METRICS = {"roc_auc": "maximize", "pr_auc": "maximize", "log_loss": "minimize", "accuracy": "maximize"}
MULTICLASS_METRICS = {"log_loss": "minimize", "accuracy": "maximize", "macro_f1": "maximize", "roc_auc_ovr": "maximize"}
REGRESSION_METRICS = {"rmse": "minimize", "mae": "minimize", "r2": "maximize"}
METRICS_BY_TASK = {"binary": CLASSIFICATION_METRICS, "multiclass": MULTICLASS_METRICS, "regression": REGRESSION_METRICS}
METRIC_DIRECTIONS = {**CLASSIFICATION_METRICS, **MULTICLASS_METRICS, **REGRESSION_METRICS}


def label_text(value: Any) -> str:
    """One text per label, whatever the column's dtype: ``3``, ``3.0`` and ``"3"`` are the label "3"."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    return str(value)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TargetSpec(_Frozen):
    name: str
    source: str
    """Column the target is read or derived from."""
    positive_when_gt: float | None = None
    """Binary targets derived from a numeric column: positive when source > this value."""
    positive: list[str] | None = None
    """Binary targets from a string, categorical or integer-coded label: the value(s) that mean positive.
    Without it (and without ``positive_when_gt``) a binary source must hold booleans or 0/1."""
    classes: list[str] | None = None
    """Multiclass targets: every known class, in a fixed order (the model's outputs follow it)."""
    on_missing: Literal["exclude", "positive", "negative", "error"] = "exclude"
    """Rows whose source is missing (e.g. flights that never departed): handled explicitly and counted."""

    @field_validator("positive", "classes", mode="before")
    @classmethod
    def _label_list(cls, value: Any, info) -> list[str] | None:
        if value is None:
            return None
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        field = f"target.{info.field_name}"
        if not values:
            raise ValueError(f"{field} is empty: name at least one value, or remove it")
        booleans = [v for v in values if isinstance(v, bool)]
        if booleans:
            raise ValueError(
                f"{field} holds the boolean(s) {booleans}: YAML reads unquoted yes/no/true/false/on/off as booleans; "
                'quote the label as it appears in the data (e.g. "Yes"). A boolean source needs no target.positive.'
            )
        odd = [v for v in values if not isinstance(v, (str, int, float)) or (isinstance(v, str) and not v.strip())]
        if odd:
            raise ValueError(f"{field} values must be non-empty strings or numbers, got {odd}")
        return [label_text(v) for v in values]


class TimeSpec(_Frozen):
    column: str
    timezone: str = "UTC"
    """Zone in which derived calendar features (weekday, hour ...) are computed."""


class FeatureSpec(_Frozen):
    name: str
    kind: FeatureKind
    derive: Literal["weekday", "month", "hour_of_day", "day_of_year"] | None = None
    """Derived from the time column, in the spec's time zone."""


class ColumnRule(_Frozen):
    dtype: ColumnDtype
    min: float | None = None
    max: float | None = None
    max_null_share: float = 0.0
    allowed: list[str] | None = None
    """Known categories; a value outside them is an unseen category."""
    unknown: Literal["reject", "report"] = "reject"


class ContractSpec(_Frozen):
    min_rows: int = 100
    max_duplicate_share: float = 0.0
    columns: dict[str, ColumnRule] = Field(default_factory=dict)


class GuardrailSpec(_Frozen):
    name: str
    tolerance: float = 0.0
    """How much worse than the champion the challenger may be on this metric (absolute)."""


class MetricSpec(_Frozen):
    primary: str
    guardrails: list[GuardrailSpec] = Field(default_factory=list)

    def direction(self, metric: str) -> Direction:
        return METRIC_DIRECTIONS[metric]  # type: ignore[return-value]


class SplitSpec(_Frozen):
    holdout_fraction: float = Field(0.2, gt=0, lt=1)
    validation_fraction: float = Field(0.15, gt=0, lt=1)
    """Carved from the training part for tuning and early stopping; never touches the holdout."""
    seed: int = 42


class ModelSpec(_Frozen):
    params: dict[str, Any] = Field(default_factory=dict)
    """XGBoost parameters (defaults for untuned training)."""
    baseline: Literal["linear", "dummy"] = "linear"
    engine: Literal["single", "dask"] = "single"
    """single: this process reads the window and trains. dask: the window is read and trained on by a Dask
    cluster (LEANOPS_DASK_SCHEDULER_ADDRESS, or a LocalCluster per retrain) with xgboost.dask, for windows
    larger than one machine's memory; the registered model is the same self-contained pipeline."""


class SearchDim(_Frozen):
    type: Literal["int", "float", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _check_bounds(self) -> "SearchDim":
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical search dimension needs a non-empty 'choices' list")
            return self
        if self.low is None or self.high is None or not self.low < self.high:
            raise ValueError(f"a {self.type} search dimension needs low < high, got low={self.low} high={self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"a log-scaled search dimension needs low > 0, got {self.low}")
        if self.type == "int" and not (float(self.low).is_integer() and float(self.high).is_integer()):
            raise ValueError(f"an int search dimension needs integer bounds, got {self.low} and {self.high}")
        return self


DEFAULT_SEARCH_SPACE: dict[str, SearchDim] = {
    "max_depth": SearchDim(type="int", low=3, high=10),
    "learning_rate": SearchDim(type="float", low=0.02, high=0.3, log=True),
    "min_child_weight": SearchDim(type="float", low=1, high=20, log=True),
    "subsample": SearchDim(type="float", low=0.6, high=1.0),
    "colsample_bytree": SearchDim(type="float", low=0.5, high=1.0),
    "reg_lambda": SearchDim(type="float", low=1e-3, high=10, log=True),
}


class TuningSpec(_Frozen):
    enabled: bool = True
    n_trials: int = 20
    timeout_seconds: float = 300
    n_workers: int = 1
    n_estimators: int = 400
    early_stopping_rounds: int = 30
    search_space: dict[str, SearchDim] = Field(default_factory=lambda: dict(DEFAULT_SEARCH_SPACE))
    min_improvement: float = Field(default=0.001, ge=0)
    """Train with the tuned parameters only if they beat the spec's own on the validation split by at
    least this much (primary metric); a smaller gain is noise the holdout will not confirm."""


class DriftSpec(_Frozen):
    numeric_method: Literal["wasserstein", "psi"] = "wasserstein"
    categorical_method: Literal["jensenshannon", "psi"] = "jensenshannon"
    threshold: float = 0.1
    """Per-feature effect-size threshold (for numeric features too, unless ``numeric_threshold`` is set)."""
    numeric_threshold: float | None = None
    """Per-feature threshold of numeric features, in the numeric method's own unit (Wasserstein: standard
    deviations of the reference), which is not the categorical method's (Jensen-Shannon: 0 to 0.83)."""
    dataset_drift_share: float = 0.3
    """A batch drifts when at least this (optionally importance-weighted) share of features drift."""
    weight_by_importance: bool = False
    min_rows: int = 500
    sample_cap: int = 100_000
    seed: int = 0
    prediction_threshold: float = 0.1
    performance_tolerance: float = 0.05
    """Degraded when the primary metric on a labelled batch is worse than the holdout by more than this."""
    persistence_k: int = 1
    persistence_n: int = 1
    reference_sample_rows: int = 20_000


class PromotionSpec(_Frozen):
    approval: Literal["auto", "manual"] = "auto"
    approval_timeout_seconds: float = 3600
    min_improvement_abs: float = 0.0
    min_improvement_rel: float = 0.0
    must_beat_baseline: bool = True
    min_primary: float | None = None
    """Absolute floor on the primary metric (applies also when there is no champion)."""
    segment_column: str | None = None
    segment_tolerance: float = 0.05
    segment_min_rows: int = 200
    latency_budget_ms_per_1k_rows: float = 500.0


class RetrainWindowSpec(_Frozen):
    prefix: str | None = None
    """S3 prefix (or local folder) holding landed batches; None means the batch given to the flow only."""
    days: float | None = None
    """Train on the rows of the last ``days`` days by the spec's time column, counted back from the newest
    row landed (not from today: replays and fast-time simulations behave like real time). None: every row."""
    min_rows: int = Field(default=0, ge=0)
    """At least this many rows: a window of ``days`` holding fewer reaches further back for the newest
    ``min_rows`` rows; if everything landed holds fewer, the retrain fails naming this field."""
    since: str | None = None
    """ISO date: leave out rows dated (time column) before it, whatever ``days`` and ``min_rows`` say."""
    recursive: bool = False
    """Whether objects in folders nested under the prefix count as landed batches."""
    suffixes: tuple[str, ...] = (".parquet", ".csv")
    """Which objects count, by name ending. Empty objects and markers (names starting with ``_`` or ``.``,
    e.g. ``_SUCCESS``) never count, nor batches the processed-batch manifest records as rejected."""
    last_n: int | None = Field(default=None, ge=1)
    """An upper bound on the objects read (the last ``last_n`` by key), never the window itself; None: no bound."""
    cooldown_minutes: float = 60.0
    """A drift-triggered retrain is skipped when the model was retrained less than this ago."""


def _check_target(task: str, target: TargetSpec) -> None:
    """Target fields that cannot work with the task fail when the spec is loaded, naming field and values."""
    given = {
        name: getattr(target, name)
        for name in ("positive", "positive_when_gt", "classes")
        if getattr(target, name) is not None
    }
    allowed = {"binary": {"positive", "positive_when_gt"}, "multiclass": {"classes"}, "regression": set()}[task]
    for name in sorted(set(given) - allowed):
        hint = {
            "positive": "it names the positive label of a binary target (task: binary)",
            "positive_when_gt": "it derives a binary target from a number (task: binary)",
            "classes": "it lists the classes of a multiclass target (task: multiclass)",
        }[name]
        raise ValueError(f"target.{name} = {given[name]!r} does not fit task {task!r}: {hint}")
    if task == "binary" and len(given) > 1:
        raise ValueError(
            f"target.positive = {target.positive!r} and target.positive_when_gt = {target.positive_when_gt!r}: "
            "give one way to tell a positive, not both"
        )
    if task == "multiclass":
        classes = target.classes
        if classes is None:
            raise ValueError("task 'multiclass' needs target.classes: every known class in a fixed order, e.g. classes: [a, b, c]")
        duplicated = sorted({c for c in classes if classes.count(c) > 1})
        if duplicated:
            raise ValueError(f"target.classes = {classes!r} lists {duplicated} more than once")
        if len(classes) < 3:
            raise ValueError(
                f"target.classes = {classes!r} has {len(classes)} class(es); a multiclass target needs at least 3 "
                "(two classes: task: binary with target.positive)"
            )
    if task != "binary" and target.on_missing in ("positive", "negative"):
        raise ValueError(f"target.on_missing = {target.on_missing!r} only fits a binary target; task is {task!r}")


class ScheduleSpec(_Frozen):
    """When the model retrains on its window of landed batches. One scheduler (prefect.yaml's
    ``schedule/every-5-minutes``) starts the retrains that are due, so a new spec needs no deployment."""

    cron: str | None = "0 2 * * 0"
    """Standard five-field cron; null: no scheduled retrains. A spec that leaves it out gets
    :func:`default_cron` of its model's name (a Sunday minute between 00:00 and 05:59); this field's own
    default only serves a ScheduleSpec built alone."""
    timezone: str = "UTC"
    """IANA zone the cron is read in (e.g. Europe/Paris: 02:00 there, daylight saving included)."""

    @model_validator(mode="after")
    def _check_cron(self) -> "ScheduleSpec":
        from datetime import datetime
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        from cronsim import CronSim, CronSimError

        try:
            zone = ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"schedule.timezone {self.timezone!r} is not an IANA time zone (e.g. UTC, Europe/Paris)") from exc
        if self.cron is not None:
            try:
                CronSim(self.cron, datetime.now(zone))
            except CronSimError as exc:
                raise ValueError(f"schedule.cron {self.cron!r} is not a five-field cron expression: {exc}") from exc
        return self


DEFAULT_CRON_NIGHT_HOURS = 6


def default_cron(model_name: str) -> str:
    """The weekly cron of a spec without ``schedule.cron``: Sunday, at a minute of 00:00-05:59 fixed by the
    model's name. One shared time (it was Sundays 02:00 for every model) starts every model's retrain at
    once: at a hundred models that is a hundred runs queued behind two worker slots for hours, while the
    other 167 hours of the week sit idle. A hash of the name spreads them and keeps each model's time stable."""
    digest = hashlib.sha256(model_name.encode()).digest()
    minute_of_night = int.from_bytes(digest[:4], "big") % (DEFAULT_CRON_NIGHT_HOURS * 60)
    return f"{minute_of_night % 60} {minute_of_night // 60} * * 0"


class Spec(_Frozen):
    # The name is also a Prefect artifact key and variable name and an MLflow model name: lowercase
    # letters, digits and dashes are the characters all of them accept.
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    description: str = ""
    task: TaskType
    default_batch_uri: str | None = None
    target: TargetSpec
    time: TimeSpec | None = None
    features: list[FeatureSpec]
    contract: ContractSpec = ContractSpec()
    metric: MetricSpec
    split: SplitSpec = SplitSpec()
    model: ModelSpec = ModelSpec()
    tuning: TuningSpec = TuningSpec()
    drift: DriftSpec = DriftSpec()
    promotion: PromotionSpec = PromotionSpec()
    retrain_window: RetrainWindowSpec = RetrainWindowSpec()
    schedule: ScheduleSpec = ScheduleSpec()
    serving: ServingSpec = ServingSpec()

    @model_validator(mode="before")
    @classmethod
    def _spread_the_default_cron(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            return data
        schedule = data.get("schedule", {})
        if isinstance(schedule, dict) and "cron" not in schedule:
            return {**data, "schedule": {**schedule, "cron": default_cron(data["name"])}}
        return data

    @model_validator(mode="after")
    def _check_consistency(self) -> "Spec":
        _check_target(self.task, self.target)
        known = METRICS_BY_TASK[self.task]
        named = [("metric.primary", self.metric.primary), *(("metric.guardrails", g.name) for g in self.metric.guardrails)]
        for field, metric in named:
            if metric not in known:
                raise ValueError(f"{field} {metric!r} does not fit task {self.task!r}; choose from {sorted(known)}")
        names = [f.name for f in self.features]
        if len(names) != len(set(names)):
            raise ValueError("feature names must be unique")
        if any(f.derive for f in self.features) and self.time is None:
            raise ValueError("derived features need a time column (spec.time)")
        if self.target.name in names:
            raise ValueError("the target cannot also be a feature")
        if self.model.engine == "dask" and self.tuning.enabled:
            raise ValueError(
                "model.engine 'dask' trains on the cluster without a tuning study (the study fits in one process): "
                "set tuning.enabled: false, and put tuned parameters in model.params"
            )
        if self.serving.low_confidence_below is not None and not self.is_classifier:
            raise ValueError("serving.low_confidence_below only fits a classifier (a class probability); task is 'regression'")
        return self

    # --- derived facts -------------------------------------------------------------------------
    @property
    def numeric_features(self) -> list[str]:
        return [f.name for f in self.features if f.kind == "numeric"]

    @property
    def categorical_features(self) -> list[str]:
        return [f.name for f in self.features if f.kind == "categorical"]

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def raw_feature_columns(self) -> list[str]:
        """Columns a batch must carry to build the features (derived ones come from the time column)."""
        cols = [f.name for f in self.features if f.derive is None]
        if self.time is not None and any(f.derive for f in self.features):
            cols.append(self.time.column)
        return cols

    @property
    def is_classifier(self) -> bool:
        return self.task != "regression"

    @property
    def primary_direction(self) -> Direction:
        return self.metric.direction(self.metric.primary)

    @property
    def spec_hash(self) -> str:
        # What a model is trained and judged with. The prose, the cron and how it is served are not: editing them must not
        # invalidate cached features and fits or make the same data a "new" training.
        identity = self.model_dump(mode="json", exclude={"description", "schedule", "serving"})
        if identity["model"]["engine"] == "single":
            del identity["model"]["engine"]  # the default: specs written before the option keep their hash
        canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    @property
    def registered_model_name(self) -> str:
        return self.name


def parse_spec(data: dict[str, Any], source: str = "<dict>") -> Spec:
    try:
        return Spec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(f"invalid model spec {source}:\n{exc}") from exc


def load_spec(path_or_name: str | Path, specs_dir: Path | None = None) -> Spec:
    """Load a spec from a YAML path, or by model name from the specs folder."""
    path = Path(path_or_name)
    if not path.suffix:
        from leanops.settings import get_settings

        path = (specs_dir or get_settings().specs_dir) / f"{path_or_name}.yaml"
    if not path.exists():
        raise SpecError(f"no model spec at {path}")
    try:
        # libyaml's parser when installed, with the same safe constructor: ~10x faster, and every run of
        # every flow loads its spec (a fully cached retrain twice).
        data = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        raise SpecError(f"model spec {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise SpecError(f"model spec {path} must be a mapping")
    return parse_spec(data, str(path))
