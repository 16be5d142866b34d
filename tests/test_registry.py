"""The MLflow adapter tells "not there" from "MLflow unreachable": the first is an answer (None,
ModelNotFound, False), the second an error tasks retry and then report. Against real endpoints: a
port nothing listens on, a real HTTP server answering 503, and the test session's MLflow server."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from leanops import registry
from leanops.errors import ModelNotFound, RegistryUnavailable, is_transient
from leanops.settings import Settings


def dead_url() -> str:
    """A URL on a port nothing listens on (bound, read, released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def settings_for(tmp_path, uri: str) -> Settings:
    return Settings(mlflow_tracking_uri=uri, mlflow_http_retries=0, home=tmp_path / "home")


class _Overloaded(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's naming
        body = b"<html>503 Service Temporarily Unavailable</html>"
        self.send_response(503)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def overloaded_url():
    """A real HTTP server on 127.0.0.1 answering every request with 503, as a proxy in front of a dead MLflow does."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Overloaded)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


READS = {
    "get_alias": lambda s: registry.get_alias("flights-delay", registry.CHAMPION, settings=s),
    "get_version": lambda s: registry.get_version("flights-delay", "1", settings=s),
    "model_exists": lambda s: registry.model_exists("flights-delay", settings=s),
    "get_model_tags": lambda s: registry.get_model_tags("flights-delay", settings=s),
    "resolve_version": lambda s: registry.resolve_version("flights-delay", None, settings=s),
}


@pytest.mark.parametrize("read", sorted(READS))
def test_an_unreachable_registry_is_an_error_never_an_absence(read, tmp_path):
    import mlflow  # noqa: F401 - imported before the clock starts: only the requests are timed

    settings = settings_for(tmp_path, dead_url())
    started = time.monotonic()
    with pytest.raises(RegistryUnavailable, match="unreachable or failing") as caught:
        READS[read](settings)
    assert is_transient(caught.value)
    # MLflow's own retries stay short (its defaults spend ~4 minutes on a dead server): the task's retries own the backoff.
    assert time.monotonic() - started < 60


@pytest.mark.parametrize("read", sorted(READS))
def test_a_registry_answering_503_is_unavailable_too(read, tmp_path, overloaded_url):
    with pytest.raises(RegistryUnavailable, match="503"):
        READS[read](settings_for(tmp_path, overloaded_url))


@pytest.mark.e2e
def test_an_absent_model_alias_or_version_is_an_answer(tmp_path, mlflow_server):
    import uuid

    settings = settings_for(tmp_path, mlflow_server)
    registered = f"registered-{uuid.uuid4().hex[:8]}"

    assert registry.get_alias("never-registered", registry.CHAMPION, settings=settings) is None
    assert registry.model_exists("never-registered", settings=settings) is False
    with pytest.raises(ModelNotFound, match="has no version '1'"):
        registry.get_version("never-registered", "1", settings=settings)
    with pytest.raises(ModelNotFound, match="no registered model 'never-registered'"):
        registry.get_model_tags("never-registered", settings=settings)

    registry.client(settings).create_registered_model(registered)
    assert registry.model_exists(registered, settings=settings) is True
    assert registry.get_alias(registered, registry.CHAMPION, settings=settings) is None
    with pytest.raises(ModelNotFound, match="has no alias 'challenger'"):
        registry.resolve_version(registered, None, settings=settings)
