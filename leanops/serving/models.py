"""What is served: one loaded model version (``ServedModel``) and the versions being served (``ModelCache``).

The cache is read on every request and written only by the alias follower. A swap replaces one entry
of a dict in a single assignment: a request holds the ``ServedModel`` it looked up and finishes on it,
the next request gets the new one. Nothing is locked on the request path and nothing is dropped.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from leanops.features import class_names, model_input_columns
from leanops.serving.batching import MicroBatcher
from leanops.serving.row_scoring import RowScorer, Unsupported
from leanops.spec import Spec

CHAMPION = "champion"


@dataclass(frozen=True)
class ServedModel:
    """One registered version loaded in memory (MLflow's pyfunc flavour: the model as any server loads it)."""

    name: str
    alias: str
    version: str
    spec: Spec
    pyfunc: Any
    loaded_at: float = field(default_factory=time.time)
    batcher: MicroBatcher | None = field(default=None, compare=False)
    # The pipeline applied without pandas (``row_scoring``), set only once checked equal to ``pyfunc``.
    scorer: RowScorer | None = field(default=None, compare=False)
    on_scored: Callable[[str, int], None] | None = field(default=None, compare=False)  # (path, rows): for the metrics

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version} ({self.alias})"

    def frame(self, rows: list[dict[str, Any]]) -> pd.DataFrame:
        """The rows as the model takes them: its input columns, numbers as float64 (missing: NaN)."""
        columns = model_input_columns(self.spec)
        frame = pd.DataFrame.from_records(rows, columns=columns)
        numeric = [c for c in self.spec.numeric_features if c in frame.columns]
        if numeric:
            frame[numeric] = frame[numeric].astype("float64")
        return frame

    def predict_rows(self, rows: list[dict[str, Any]]) -> np.ndarray:
        if self.scorer is not None:
            try:
                output = self.scorer(rows)
            except Unsupported:
                pass  # a value the fast path does not reproduce exactly: pyfunc answers this batch
            else:
                self._scored("fast", len(rows))
                return output
        output = self.pyfunc_rows(rows)
        self._scored("pyfunc", len(rows))
        return output

    def _scored(self, path: str, n_rows: int) -> None:
        if self.on_scored is not None:
            self.on_scored(path, n_rows)

    def pyfunc_rows(self, rows: list[dict[str, Any]]) -> np.ndarray:
        """The reference answer: MLflow's pyfunc (schema enforcement included) on the rows as a frame."""
        output = self.pyfunc.predict(self.frame(rows))
        return np.asarray(output.to_numpy() if hasattr(output, "to_numpy") else output)

    async def predict(self, rows: list[dict[str, Any]]) -> np.ndarray:
        if self.batcher is None:
            return self.predict_rows(rows)
        return await self.batcher.predict(rows)


def describe_outputs(output: np.ndarray, spec: Spec) -> list[dict[str, Any]]:
    """Per row: ``output`` (the pyfunc's own answer), ``score`` (positive-class probability, the top
    class's probability, or the predicted number) and ``label`` (the predicted class, for classifiers)."""
    values = output.tolist()
    if spec.task == "regression":
        return [{"output": v, "score": float(v if not isinstance(v, list) else v[0]), "label": None} for v in values]
    names = class_names(spec)
    described = []
    for v in values:
        if not isinstance(v, list):  # a model answering classes or one probability per row
            described.append({"output": v, "score": float(v), "label": None})
            continue
        if spec.task == "binary":
            score = float(v[-1])
            described.append({"output": v, "score": score, "label": names[1] if score >= 0.5 else names[0]})
        else:
            top = int(np.argmax(v))
            described.append({"output": v, "score": float(v[top]), "label": names[top] if top < len(names) else str(top)})
    return described


class ModelCache:
    """(model name, alias) -> the ServedModel answering for it."""

    def __init__(self) -> None:
        self._served: dict[tuple[str, str], ServedModel] = {}
        self._write = threading.Lock()  # writers only: readers never wait

    def get(self, name: str, alias: str = CHAMPION) -> ServedModel | None:
        return self._served.get((name, alias))

    def swap(self, served: ServedModel) -> ServedModel | None:
        """Serve ``served`` from now on; returns the one it replaced (still answering its in-flight requests)."""
        with self._write:
            key = (served.name, served.alias)
            previous = self._served.get(key)
            updated = dict(self._served)
            updated[key] = served
            self._served = updated
            return previous

    def drop(self, name: str, alias: str) -> ServedModel | None:
        with self._write:
            updated = dict(self._served)
            previous = updated.pop((name, alias), None)
            self._served = updated
            return previous

    def versions(self) -> dict[tuple[str, str], str]:
        return {key: served.version for key, served in self._served.items()}
