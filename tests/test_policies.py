"""Which failures a task retries: transient I/O only, never a programming error or one of our verdicts."""

from __future__ import annotations

import httpx
import pytest

from leanops.errors import (
    ContractViolation, ModelNotFound, RegistrationFailed, RegistryUnavailable, SpecError, TransientIOError,
)
from tasks._policies import is_retryable


def caused_by(error: BaseException, cause: BaseException) -> BaseException:
    error.__cause__ = cause
    return error


def status_error(code: int) -> httpx.HTTPStatusError:
    request = httpx.Request("POST", "http://127.0.0.1:4200/api/v2/concurrency_limits/increment")
    return httpx.HTTPStatusError(f"{code}", request=request, response=httpx.Response(code, request=request))


@pytest.mark.parametrize("error", [
    TransientIOError("s3://b/k: S3 answered SlowDown"),
    RegistryUnavailable("MLflow at http://127.0.0.1:5050 is unreachable or failing"),
    ConnectionRefusedError(111, "Connection refused"),
    TimeoutError("timed out"),
    caused_by(RegistrationFailed("registering m failed; nothing was registered"), ConnectionResetError(104, "reset")),
    httpx.ConnectError("All connection attempts failed"),
    status_error(503),
    status_error(429),
], ids=repr)
def test_transient_io_is_retried(error):
    assert is_retryable(error)


@pytest.mark.parametrize("error", [
    TypeError("'NoneType' object is not subscriptable"),
    KeyError("roc_auc"),
    AttributeError("'Batch' object has no attribute 'frame'"),
    ValueError("could not convert string to float"),
    ContractViolation("s3://b/k.parquet", ["column 'carrier' is missing"]),
    ModelNotFound("model 'm' has no version '9'"),
    SpecError("approval must be 'auto' or 'manual'"),
    RegistrationFailed("registering m failed (KeyError: 'roc_auc'); nothing was registered"),
    status_error(404),
    status_error(409),
], ids=repr)
def test_programming_errors_and_verdicts_fail_at_once(error):
    assert not is_retryable(error)
