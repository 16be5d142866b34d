"""Stage: check a batch against its spec's data contract. Violations are listed, never retried."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from leanops import contract, prediction_log
from leanops.errors import ContractViolation
from leanops.results import Batch, ValidationReport
from leanops.spec import Spec
from tasks._policies import CACHED


@task(**CACHED, retries=0)
def validate_batch(batch: Batch, spec: Spec) -> ValidationReport:
    logger = get_run_logger()
    try:
        report = contract.validate_batch(batch.frame, spec, batch.uri, batch.fingerprint, logged=prediction_log.is_log_path(batch.uri))
    except ContractViolation as violation:
        create_markdown_artifact(
            key="contract-violations",
            markdown="## Batch rejected by its data contract\n\n"
            + f"`{violation.uri}`\n\n"
            + "\n".join(f"- {v}" for v in violation.violations),
            description=f"{len(violation.violations)} contract violations",
        )
        raise
    for warning in report.warnings:
        logger.warning("contract warning: %s", warning)
    logger.info("batch %s passed its contract (%d rows)", batch.uri, report.n_rows)
    return report
