"""Stage: target, features and the time-aware split."""

from __future__ import annotations

from prefect import get_run_logger, task

from leanops import features
from leanops.results import Batch, FeatureSet
from leanops.spec import Spec
from tasks._policies import CACHED


@task(**CACHED)
def build_features(batch: Batch, spec: Spec) -> FeatureSet:
    feature_set = features.build_feature_set(batch, spec)
    logger = get_run_logger()
    logger.info("split: %s", feature_set.split_description)
    for reason, count in feature_set.rows_excluded.items():
        logger.info("excluded %d rows: %s", count, reason)
    return feature_set
