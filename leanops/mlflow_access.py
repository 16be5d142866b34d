"""Reaching MLflow: the client, its URIs and what its errors mean. Shared by the two MLflow adapters,
``leanops.registry`` (registered models) and ``leanops.tracking`` (experiments and runs); nothing else
imports mlflow.

"Not there" (an absent model, version or alias) is an answer; "MLflow unreachable or failing" is not,
and must never be read as one: it becomes RegistryUnavailable, which tasks retry and then report.
"""

from __future__ import annotations

import functools
import os

from leanops.errors import RegistryUnavailable
from leanops.settings import Settings, get_settings


def tracking_uri(settings: Settings | None = None) -> str:
    return (settings or get_settings()).resolved_mlflow_tracking_uri


def _http_policy(settings: Settings | None = None) -> None:
    # MLflow reads its HTTP retry policy from these variables on every request, nowhere else. Its own
    # default (7 retries, factor 2) spends about four minutes on a dead server before any error: our
    # task retries own the backoff, so MLflow's stay short and an outage surfaces in seconds.
    settings = settings or get_settings()
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(settings.mlflow_http_retries)
    os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] = "1"
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(settings.mlflow_http_timeout_seconds)
    # Basic-auth credentials of the tracking server (production profile): MLflow reads them from here only.
    os.environ.update(settings.mlflow_client_env())


def client(settings: Settings | None = None):
    from mlflow import MlflowClient

    _http_policy(settings)
    return MlflowClient(tracking_uri=tracking_uri(settings), registry_uri=tracking_uri(settings))


def activate(settings: Settings | None = None) -> None:
    """Point MLflow's module-level API (fluent runs, model loading) at our server."""
    import mlflow

    _http_policy(settings)
    mlflow.set_tracking_uri(tracking_uri(settings))
    mlflow.set_registry_uri(tracking_uri(settings))


_ABSENT_CODES = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")


def is_absent(exc: BaseException) -> bool:
    from mlflow.exceptions import MlflowException

    return isinstance(exc, MlflowException) and exc.error_code in _ABSENT_CODES


def is_unavailable(exc: BaseException) -> bool:
    """Refused or timed-out connections, and answers 429 / 5xx (from MLflow or a proxy in front of it)."""
    import requests
    from mlflow.exceptions import MlflowException, RestException

    if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout, ConnectionError, TimeoutError)):
        return True
    if not isinstance(exc, MlflowException):
        return False
    # MLflow raises INTERNAL_ERROR for its own client-side mistakes too: only a server's answer or a
    # failed request ("API request to ... failed") says anything about the server.
    answered_or_failed = isinstance(exc, RestException) or str(exc.message).startswith("API request to")
    status = exc.get_http_status_code()
    return answered_or_failed and (status == 429 or status >= 500)


def is_refused(exc: BaseException) -> bool:
    """The server answered that our credentials are missing or wrong (401) or not allowed (403)."""
    from mlflow.exceptions import MlflowException

    return isinstance(exc, MlflowException) and exc.get_http_status_code() in (401, 403)


def check_server(settings: Settings | None = None, timeout: float = 5.0) -> None:
    """One authenticated read (the first experiment), tried once, within ``timeout`` seconds. Raises
    RegistryUnavailable when MLflow does not answer (or fails), PermissionError when it refuses our credentials."""
    settings = settings or get_settings()
    probe = settings.model_copy(update={"mlflow_http_retries": 0, "mlflow_http_timeout_seconds": max(1, round(timeout))})
    try:
        client(probe).search_experiments(max_results=1)
    except Exception as exc:
        if is_refused(exc):
            raise PermissionError(f"MLflow at {tracking_uri(settings)} refused our credentials ({exc.get_http_status_code()})") from exc
        if is_unavailable(exc):
            raise unavailable_error(exc, "search_experiments", settings) from exc
        raise
    finally:
        _http_policy(settings)  # the next client of this process gets the configured retries back


def unavailable_error(exc: BaseException, what: str, settings: Settings | None = None) -> RegistryUnavailable:
    return RegistryUnavailable(
        f"MLflow at {tracking_uri(settings)} is unreachable or failing ({what}: {type(exc).__name__}: {exc})"[:1000]
        + "; nothing was read as absent: retry when it is back"
    )


def speaks_to_mlflow(function):
    """Turn MLflow being unreachable or failing into RegistryUnavailable; every other error passes unchanged."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except RegistryUnavailable:
            raise
        except Exception as exc:
            if is_unavailable(exc):
                raise unavailable_error(exc, function.__name__, kwargs.get("settings")) from exc
            raise

    return wrapper


def experiment_id(mlflow_client, name: str) -> str:
    """The experiment's id, creating it on first use (a concurrent creator wins harmlessly)."""
    experiment = mlflow_client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return mlflow_client.create_experiment(name)
    except Exception as exc:  # noqa: BLE001 - created meanwhile by another run (an outage re-raises)
        if is_unavailable(exc):
            raise
        return mlflow_client.get_experiment_by_name(name).experiment_id


def run_url(run_id: str, experiment: str | None = None, settings: Settings | None = None) -> str:
    base = tracking_uri(settings).rstrip("/")
    if not base.startswith("http"):
        return f"{base} (run {run_id})"
    if experiment is None:
        experiment = client(settings).get_run(run_id).info.experiment_id
    return f"{base}/#/experiments/{experiment}/runs/{run_id}"


def model_version_url(name: str, version: str, settings: Settings | None = None) -> str:
    base = tracking_uri(settings).rstrip("/")
    return f"{base}/#/models/{name}/versions/{version}" if base.startswith("http") else f"models:/{name}/{version}"
