"""The simulated models and their data: specs derived from specs/flights-delay.yaml, one per model, and
batches cut from real 2013 flights (leanops.datasets): January-April for training and stable batches,
July-August for drifting ones, January-April with shuffled delays for degrading ones."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from leanops import datasets, storage
from leanops.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
TRAINING_MONTHS = range(1, 5)
SUMMER_MONTHS = (7, 8)
# drift.min_rows is 2,000 (Jensen-Shannon on `dest` reads noise as drift below it): batches a little above.
BATCH_ROWS = 2200
TRAINING_ROWS_PER_MONTH = 1000


def model_name(run_id: str, index: int) -> str:
    return f"sim-{run_id}-{index:03d}"


def write_spec(folder: Path, name: str, incoming_prefix: str, cooldown_real_minutes: float) -> Path:
    """The flights spec as model ``name``: small (60 trees), no cron of its own (the simulator starts the weekly
    retrains on simulated time), a cooldown in real minutes, no baseline gate, and duplicates allowed: the simulator recycles
    real rows once a model's pool is used up, so a long window holds the same flight twice."""
    data = yaml.safe_load((ROOT / "specs" / "flights-delay.yaml").read_text())
    data["name"] = name
    data["model"]["params"]["n_estimators"] = 60
    data["tuning"]["enabled"] = False
    data["schedule"] = {"cron": None}
    data["contract"]["max_duplicate_share"] = 1.0
    # 4,000 rows and 60 trees lost to the linear baseline now and then (seen: -0.015 ROC AUC), and a model
    # without a first champion has nothing to monitor: the other gates still judge every challenger.
    data["promotion"]["must_beat_baseline"] = False
    data["retrain_window"]["prefix"] = f"{incoming_prefix}{name}/"
    data["retrain_window"]["cooldown_minutes"] = round(cooldown_real_minutes, 4)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@dataclass
class Pools:
    base: pd.DataFrame
    summer: pd.DataFrame

    @classmethod
    def load(cls) -> Pools:
        return cls(datasets.flights(TRAINING_MONTHS), datasets.flights(list(SUMMER_MONTHS)))


def batch(pools: Pools, source: str, model_index: int, hour: int) -> pd.DataFrame:
    """Model ``model_index``'s batch of simulated ``hour``: consecutive rows of the pool in a per-model order,
    wrapping around when the pool is used up."""
    pool = pools.summer if source == "summer" else pools.base
    order = np.random.default_rng(model_index).permutation(len(pool))
    start = (hour * BATCH_ROWS) % len(pool)
    rows = np.take(order, range(start, start + BATCH_ROWS), mode="wrap")
    frame = pool.iloc[np.sort(rows)].reset_index(drop=True)
    if source == "shuffled":
        # The features keep their distribution, the delays no longer follow them: the champion degrades
        # without data drift.
        frame["dep_delay"] = frame["dep_delay"].sample(frac=1.0, random_state=hour).to_numpy()
    return frame


def land(frame: pd.DataFrame, settings: Settings, model: str, label: str) -> tuple[str, str]:
    """Put a batch under the incoming prefix (the bucket notifies SQS, the bridge emits leanops.batch.landed);
    returns (key, uri)."""
    key = f"{settings.s3_incoming_prefix}{model}/{label}{settings.s3_incoming_suffix}"
    return key, storage.write_table(frame, f"s3://{settings.s3_bucket}/{key}", settings)


def training_frame(model_index: int) -> pd.DataFrame:
    return datasets.flights_sample(TRAINING_MONTHS, rows_per_month=TRAINING_ROWS_PER_MONTH, seed=model_index)
