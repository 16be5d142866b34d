"""Scenario 2: MLflow, or the process registering a model, dies between logging the model and moving its alias.

The fault is real and lands at a known point whatever the machine's speed: the registration talks to MLflow
through a tripwire, a TCP proxy (tests/reliability/proxy.py) that forwards every request until the client
sends the alias move. That request never reaches MLflow: the session's MLflow server is killed (its whole
process group, as ``infra.services`` stops it), or the registering process is SIGKILLed. Either way the
registration's own undo cannot run, and the version it created is left half-registered.

What must hold: no alias points at the half-registered version and neither promotion nor rollback takes it;
a rerun of the same training removes it and converges to exactly one new, complete version under the alias;
the champion never moves."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from leanops import datasets, features, lineage, modeling, registration, registry, storage
from leanops.errors import ModelNotFound, RegistryUnavailable
from leanops.results import Batch
from leanops.settings import Settings
from leanops.spec import load_spec
from reliability.proxy import TcpProxy, shut_down
from support import spec_copy

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
MODEL = "reliability-registry"
ALIAS_MOVE = b"POST /api/2.0/mlflow/registered-models/alias "
ALIASES = (registry.CHAMPION, registry.CHALLENGER, registry.PREVIOUS_CHAMPION)


class Tripwire(TcpProxy):
    """Forwards like TcpProxy until a client sends a request starting with ``request_line``. That request is
    never forwarded: ``on_trip`` runs (it kills something for real), the connection is reset, and from then
    on every connection is reset too, until ``up()``."""

    def __init__(self, target_host: str, target_port: int, request_line: bytes) -> None:
        super().__init__(target_host, target_port)
        self.request_line = request_line
        self.on_trip = lambda: None
        self.tripped = threading.Event()

    def _forward(self, client, upstream) -> None:
        try:
            # A client on a kept-alive connection sends its next request only after the last answer,
            # so a request line starts a chunk.
            while chunk := client.recv(65536):
                if chunk.startswith(self.request_line) and not self.tripped.is_set():
                    self.down()
                    self.on_trip()
                    self.tripped.set()
                    break
                upstream.sendall(chunk)
        except OSError:
            pass
        shut_down(client, upstream)
        client.close()
        upstream.close()


@pytest.fixture(scope="module")
def training(stack, tmp_path_factory):
    """One small fit (2,400 flights, 30 trees) whose registration the scenarios interrupt, and a champion
    registered before them (a training of its own) that nothing may move."""
    folder = tmp_path_factory.mktemp("registry-killed")
    spec = load_spec(spec_copy(folder, MODEL, model__params__n_estimators=30))
    uri = f"s3://{stack.s3_bucket}/training/{MODEL}/2013-h1.parquet"
    frame = datasets.flights_sample(range(1, 7), rows_per_month=400, seed=31)
    storage.write_table(frame, uri)
    frame, fingerprint = storage.read_table(uri)
    feature_set = features.build_feature_set(Batch(uri, fingerprint, frame), spec)
    fitted = modeling.fit_models(feature_set, spec)
    evaluation = modeling.evaluate(fitted, feature_set, spec)
    run_lineage = lineage.build_lineage(uri, fingerprint, spec.spec_hash, None)
    args = (spec, fitted, evaluation, feature_set, run_lineage)
    champion = registration.register_training(*args, "champion-training", alias=registry.CHAMPION)
    return {"args": args, "champion": champion.version, "folder": folder}


@pytest.fixture
def mlflow_tripwire(stack):
    proxy = Tripwire(stack.host, stack.mlflow_port, ALIAS_MOVE)
    yield proxy
    proxy.close()


def mlflow_service(stack):
    from infra import services

    return services.mlflow_server(stack.home, stack.host, stack.mlflow_port)


def aliases_now() -> dict[str, str | None]:
    return {alias: registry.alias_version(MODEL, alias) for alias in ALIASES}


def assert_half_registered_and_never_taken(key: str, before: list[str]) -> registry.ModelVersionInfo:
    """The interrupted registration left one version, pending; no alias points at it; no move takes it."""
    leftovers = [info for info in registry.list_versions(MODEL) if info.version not in before]
    assert [info.tags.get(registry.TRAINING_KEY_TAG) for info in leftovers] == [key]
    (pending,) = leftovers
    assert pending.tags.get(registry.REGISTRATION_TAG) == registry.PENDING
    assert pending.version not in aliases_now().values()
    assert registry.find_by_training_key(MODEL, key) is None
    with pytest.raises(ModelNotFound, match="did not finish"):
        registry.resolve_version(MODEL, pending.version)
    return pending


def assert_converged(result, key: str, before: list[str], pending: registry.ModelVersionInfo, champion: str) -> None:
    """Exactly one new version, complete, under the challenger alias; the half-registered one is gone."""
    after = [info for info in registry.list_versions(MODEL) if info.version not in before]
    assert [info.version for info in after] == [result.version]
    assert result.created and result.version != pending.version
    (version,) = after
    assert version.tags[registry.TRAINING_KEY_TAG] == key
    assert version.tags[registry.REGISTRATION_TAG] == registry.COMPLETE
    assert aliases_now()[registry.CHALLENGER] == result.version
    assert aliases_now()[registry.CHAMPION] == champion
    assert registry.resolve_version(MODEL, registry.CHALLENGER).version == result.version


def test_mlflow_killed_before_the_alias_move_leaves_nothing_an_alias_takes_and_a_rerun_converges(
    training, stack, mlflow_tripwire, record
):
    from infra import services

    row = record("2 MLflow killed between logging the model and the alias move, rerun",
                 "MLflow server SIGKILLed when the alias move is sent")
    key = "server-killed"
    service = mlflow_service(stack)
    mlflow_tripwire.on_trip = lambda: services.stop(service, stack.home, grace=0)
    before = [info.version for info in registry.list_versions(MODEL)]
    through_tripwire = Settings(mlflow_tracking_uri=mlflow_tripwire.url)
    try:
        with pytest.raises(RegistryUnavailable, match="unreachable or failing"):
            registration.register_training(*training["args"], key, alias=registry.CHALLENGER, settings=through_tripwire)
        killed_at = time.monotonic()
        assert mlflow_tripwire.tripped.is_set()
        assert services.read_pid(service, stack.home) is None  # really dead, not merely cut off
    finally:
        services.start(service, stack.home)  # the session's MLflow, back on the same database

    pending = assert_half_registered_and_never_taken(key, before)
    result = registration.register_training(*training["args"], key, alias=registry.CHALLENGER)
    assert_converged(result, key, before, pending, training["champion"])
    # A third run finds the complete version and adds nothing.
    again = registration.register_training(*training["args"], key, alias=registry.CHALLENGER)
    assert (again.created, again.version) == (False, result.version)
    row.survived, row.data_lost = True, "none"
    row.recover_seconds = time.monotonic() - killed_at


REGISTER_FROM_PICKLE = """
import pickle, sys
from leanops import registration, registry
args, key = pickle.load(open(sys.argv[1], "rb"))
registration.register_training(*args, key, alias=registry.CHALLENGER)
"""


def test_a_process_killed_during_registration_leaves_a_pending_version_the_rerun_removes(
    training, stack, mlflow_tripwire, record, tmp_path
):
    row = record("2 registering process SIGKILLed before the alias move, rerun",
                 "SIGKILL of the registering process when it sends the alias move")
    key = "process-killed"
    inputs = tmp_path / "registration.pickle"
    inputs.write_bytes(pickle.dumps((training["args"], key)))
    before = [info.version for info in registry.list_versions(MODEL)]
    log = (tmp_path / "killed-registration.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-c", REGISTER_FROM_PICKLE, str(inputs)], cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "LEANOPS_MLFLOW_TRACKING_URI": mlflow_tripwire.url},
    )
    mlflow_tripwire.on_trip = lambda: process.send_signal(signal.SIGKILL)
    try:
        code = process.wait(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()
    killed_at = time.monotonic()
    assert mlflow_tripwire.tripped.is_set(), (tmp_path / "killed-registration.log").read_text()[-3000:]
    assert code == -signal.SIGKILL

    pending = assert_half_registered_and_never_taken(key, before)
    result = registration.register_training(*training["args"], key, alias=registry.CHALLENGER)
    assert_converged(result, key, before, pending, training["champion"])
    row.survived, row.data_lost = True, "none"
    row.recover_seconds = time.monotonic() - killed_at
