"""Where a model came from: code version and package version."""

from __future__ import annotations

import os
import subprocess
from functools import lru_cache
from importlib import metadata

from leanops.results import Lineage, ParamsChoice, combine_fingerprints


@lru_cache(maxsize=1)
def git_commit() -> str:
    """The commit checked out in the working directory, the code that runs (``+dirty`` when the tree has
    uncommitted changes), or LEANOPS_GIT_COMMIT."""
    if os.environ.get("LEANOPS_GIT_COMMIT"):
        return os.environ["LEANOPS_GIT_COMMIT"]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, check=True, timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}+dirty" if dirty else commit


def leanops_version() -> str:
    try:
        return metadata.version("leanops")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def build_lineage(
    data_uri: str, data_fingerprint: str, spec_hash: str, flow_run_id: str | None, sources: tuple[str, ...] = (),
    tuning: ParamsChoice | None = None, data_identity: str = "",
) -> Lineage:
    return Lineage(
        git_commit=git_commit(),
        data_uri=data_uri,
        data_fingerprint=data_fingerprint,
        spec_hash=spec_hash,
        leanops_version=leanops_version(),
        flow_run_id=flow_run_id,
        data_sources=sources,
        tuning_study=tuning.study_name if tuning else None,
        params_choice=tuning.explanation if tuning else "",
        data_identity=data_identity,
        retrain_key=retrain_key(data_identity, spec_hash, tuning is not None) if data_identity else "",
    )


def training_key(lineage: Lineage, train_fingerprint: str) -> str:
    """Same data, spec, params and code -> same key -> no second registered version."""
    return combine_fingerprints(lineage.data_fingerprint, lineage.spec_hash, train_fingerprint, lineage.git_commit)


def retrain_key(data_identity: str, spec_hash: str, tuned: bool) -> str:
    """What a retrain is looked up by before it reads anything: the batch's storage identity (ETags /
    stat, see leanops.storage.object_identity), the spec, whether it tunes, and the code (commit and the
    feature and model recipe versions). Everything else a training depends on follows from these: the
    content, hence the features and, for a tuned retrain, the cached study's choice."""
    from leanops.features import FEATURES_VERSION
    from leanops.modeling import MODELING_VERSION

    return combine_fingerprints(
        "retrain", data_identity, spec_hash, "tuned" if tuned else "spec-params", FEATURES_VERSION, MODELING_VERSION, git_commit(),
    )
