"""Labels that arrive after the prediction, joined to what was predicted by prediction id.

A labels batch lands under ``<incoming prefix><model>/_predictions/labels/`` with a ``prediction_id``
column and the spec's target source column. drift-monitor receives it like any batch; here it becomes the
logged sample rows (the inputs the endpoint saw) with their labels, so the performance check
(``monitoring.assess_batch``) scores the champion on them as on any labelled batch. Only predictions in the
log's sample can be joined: the sample is uniform, so its labelled rows measure the served traffic fairly.
"""

from __future__ import annotations

import pandas as pd

from leanops import prediction_log, storage
from leanops.errors import BatchReadError
from leanops.results import Batch, combine_fingerprints
from leanops.settings import Settings
from leanops.spec import Spec


def join_labels(labels: Batch, spec: Spec, settings: Settings | None = None) -> Batch:
    """The logged sample rows named by ``labels``, with the labels' target column. A batch that is not a
    labels batch is returned as it is. Raises ``BatchReadError`` naming what is missing or unmatched."""
    if prediction_log.stream_of(labels.uri) != prediction_log.LABELS:
        return labels
    id_column, target = prediction_log.PREDICTION_ID, spec.target.source
    missing = [c for c in (id_column, target) if c not in labels.frame]
    if missing:
        raise BatchReadError(f"{labels.uri}: a labels batch needs the columns {missing} ({id_column!r} and the target source)")
    given = labels.frame[[id_column, target]].copy()
    given[id_column] = given[id_column].astype(str)
    repeated = given[id_column][given[id_column].duplicated()]
    if len(repeated):
        raise BatchReadError(f"{labels.uri}: {len(repeated)} prediction ids are labelled twice, e.g. {repeated.iloc[0]!r}")
    logged, fingerprints, sources = _logged_sample(spec, set(given[id_column]), settings)
    if logged.empty:
        raise BatchReadError(
            f"{labels.uri}: none of its {len(given)} prediction ids is in the prediction log's sample of {spec.name} "
            f"({prediction_log.incoming_log_prefix(spec.name, prediction_log.SAMPLE, settings)}); only sampled predictions "
            "can be joined, and pruned ones are gone"
        )
    joined = logged.drop(columns=[target], errors="ignore").merge(given, on=id_column, how="inner")
    return Batch(
        uri=labels.uri,
        fingerprint=combine_fingerprints(labels.fingerprint, *fingerprints),
        frame=joined.reset_index(drop=True),
        sources=(labels.uri, *sources),
    )


def _logged_sample(spec: Spec, ids: set[str], settings: Settings | None) -> tuple[pd.DataFrame, list[str], list[str]]:
    """The sample rows with one of ``ids``, read object by object (only matching rows are kept in memory):
    the sample's batches, and the remainders too small to be one that endpoints wrote when they stopped."""
    objects = [
        *storage.list_objects(prediction_log.incoming_log_prefix(spec.name, prediction_log.SAMPLE, settings), suffix=".parquet", settings=settings),
        *storage.list_objects(prediction_log.kept_log_prefix(spec.name, prediction_log.REMAINDER, settings), suffix=".parquet", settings=settings),
    ]
    frames, fingerprints, sources = [], [], []
    for info in objects:
        frame, fingerprint = storage.read_table(info.uri, settings)
        matched = frame[frame[prediction_log.PREDICTION_ID].astype(str).isin(ids)]
        if len(matched):
            frames.append(matched)
            fingerprints.append(fingerprint)
            sources.append(info.uri)
    if not frames:
        return pd.DataFrame(), [], []
    return pd.concat(frames, ignore_index=True), fingerprints, sources
