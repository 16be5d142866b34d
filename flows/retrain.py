"""retrain: ingest a batch, validate it, build features, (tune,) train, evaluate, register."""

from __future__ import annotations

from prefect import flow

from leanops import events
from leanops.results import RegistrationResult
from tasks.evaluate import evaluate_model, find_champion
from tasks.featurize import build_features
from tasks.ingest import load_batch
from tasks.publish import publish_event
from tasks.register import register_model
from tasks.spec import load_model_spec
from tasks.train import fit_model
from tasks.validate import validate_batch


@flow(name="retrain", log_prints=True)
def retrain(spec: str = "flights-delay", batch_uri: str | None = None) -> RegistrationResult:
    """Train a challenger for the model described by ``spec`` on ``batch_uri`` and register it in MLflow."""
    model_spec = load_model_spec(spec)
    batch = load_batch(batch_uri, model_spec)
    validate_batch(batch, model_spec)
    features = build_features(batch, model_spec)
    trained = fit_model(features, model_spec)
    evaluation = evaluate_model(trained, features, model_spec, find_champion(model_spec))
    registration = register_model(model_spec, trained, evaluation, features, batch)
    if registration.created:
        publish_event(
            events.model_registered(
                registration.model_name, registration.version, registration.run_id, batch.uri,
                evaluation.primary_metric, evaluation.model[evaluation.primary_metric],
            )
        )
    return registration


if __name__ == "__main__":
    from flows._cli import run_from_command_line

    run_from_command_line(retrain)
