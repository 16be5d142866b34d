"""Errors a user can act on. Each names what went wrong precisely."""

from __future__ import annotations


class LeanopsError(Exception):
    """Base class: an expected, explainable failure (never retried blindly)."""


class SpecError(LeanopsError):
    """The model spec is malformed."""


class BatchReadError(LeanopsError):
    """A batch could not be read as a table (empty file, unknown format, corrupt bytes)."""


class BatchTooLarge(BatchReadError):
    """A batch object is larger than this process may read into memory (refused before reading it)."""


class ObjectNotFound(BatchReadError):
    """No object (or file) at that URI."""


class ContractViolation(LeanopsError):
    """A batch broke its data contract. ``violations`` lists every problem found."""

    def __init__(self, uri: str, violations: list[str]):
        self.uri = uri
        self.violations = list(violations)
        listed = "\n".join(f"  - {v}" for v in self.violations)
        super().__init__(f"batch {uri} violates its data contract ({len(self.violations)} problems):\n{listed}")

    def __reduce__(self):  # keep pickling (Prefect results, Dask) faithful
        return (ContractViolation, (self.uri, self.violations))


class NoChampion(LeanopsError):
    """The model has no version with the ``champion`` alias yet."""


class ModelNotFound(LeanopsError):
    """A registered model, version or alias does not exist."""


class RegistrationFailed(LeanopsError):
    """Registering a model failed; whatever was half-created has been removed."""


class GateFailed(LeanopsError):
    """A promotion gate failed."""


class TransientIOError(LeanopsError):
    """A retryable I/O failure (network, throttling, 5xx)."""


class RegistryUnavailable(TransientIOError):
    """MLflow could not be reached or answered with a server error: retried, then reported. Never read
    as "no such model" or "no champion"."""


class ClusterUnavailable(TransientIOError):
    """The Dask scheduler (LEANOPS_DASK_SCHEDULER_ADDRESS) could not be reached: retried, then reported."""


class StorageCredentialsMissing(LeanopsError):
    """The object store needs credentials and none are configured: a setup problem, not an outage."""


class MalformedNotification(LeanopsError):
    """A queue message is not an S3 notification we can read; the bridge dead-letters it."""


class AliasConflict(LeanopsError):
    """The champion changed while an alias move was being prepared; nothing was moved."""


class DriftInputError(LeanopsError):
    """Frames given to a drift check cannot be compared (a feature on one side only, wrong types ...)."""


class DriftReportError(LeanopsError):
    """The Evidently report of a drift check could not be built or attached; the check's verdict was
    recorded and announced before, and stands. Transient when its cause is (a retry may attach it)."""


class TuningFailed(LeanopsError):
    """A tuning study cannot give a result (no trial completed, or the study does not exist)."""


# Failures that retrying cannot fix: tasks never retry these.
NEVER_RETRY = (
    SpecError, BatchReadError, ContractViolation, NoChampion, ModelNotFound, GateFailed, MalformedNotification, AliasConflict,
    DriftInputError, StorageCredentialsMissing,
)


def is_transient(error: BaseException) -> bool:
    """Whether retrying may fix ``error``: an I/O failure (ours, or the OS's connection refused / timed
    out), found on the error or on what caused it. Programming errors (TypeError, KeyError ...) and our
    own verdicts are never transient. Each adapter translates its vendor's network errors into
    TransientIOError, so nothing here needs to know a vendor."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, NEVER_RETRY):
            return False
        if isinstance(current, (TransientIOError, ConnectionError, TimeoutError)):
            return True
        current = current.__cause__ or current.__context__
    return False
