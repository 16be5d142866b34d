"""The prediction log on the endpoint: the ``PredictionSink`` of ``leanops.serving.extensions`` that
hands answered predictions to ``leanops.prediction_log`` (one log per model) and flushes them to the
object store from a background thread. What a version saw in training (its reference sample in MLflow)
is read once per version, to keep predictions outside it for inspection."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence

from leanops import registry
from leanops.prediction_log import FeatureRanges, LogFlusher, PredictionLog
from leanops.serving.extensions import PredictionRecord
from leanops.settings import Settings
from leanops.spec import Spec

log = logging.getLogger(__name__)


def logs_predictions(spec: Spec) -> bool:
    return spec.serving.log_sample_share > 0 or spec.serving.low_confidence_below is not None


class PredictionLogSink:
    def __init__(self, specs: Mapping[str, Spec], settings: Settings) -> None:
        self.settings = settings
        self._ranges_of: dict[tuple[str, str], FeatureRanges | None] = {}
        self._lock = threading.Lock()
        self.logs = {
            name: PredictionLog(spec, settings, ranges=lambda version, name=name: self._ranges(name, version))
            for name, spec in specs.items() if logs_predictions(spec)
        }
        self.flusher = LogFlusher(list(self.logs.values()), settings.prediction_log_flush_seconds)

    def write(self, records: Sequence[PredictionRecord]) -> None:
        self.flusher.start()  # idempotent: the first batch starts it
        by_model: dict[str, list[PredictionRecord]] = {}
        for record in records:
            by_model.setdefault(record.model, []).append(record)
        for model, mine in by_model.items():
            if model in self.logs:
                self.logs[model].offer(mine)

    def _ranges(self, model: str, version: str) -> FeatureRanges | None:
        key = (model, version)
        with self._lock:
            if key in self._ranges_of:
                return self._ranges_of[key]
        try:
            info = registry.get_version(model, version, settings=self.settings)
            ranges = FeatureRanges.from_reference(registry.load_reference_sample(info, settings=self.settings), self.logs[model].spec)
        except Exception as exc:  # noqa: BLE001 - without its reference no row is called out of range; sampling and confidence go on
            log.warning("no training ranges for %s v%s (%s): its predictions are not checked for out-of-range inputs", model, version, exc)
            ranges = None
        with self._lock:
            self._ranges_of[key] = ranges
        return ranges

    def close(self) -> list[str]:
        """Flush everything, the sample's remainder included (the endpoint is stopping)."""
        return self.flusher.stop()
