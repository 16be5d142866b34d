"""retrain: ingest a batch, validate it, build features, (tune,) train, evaluate, register."""

from __future__ import annotations

from typing import Literal

from prefect import flow

from leanops import events
from leanops.results import RegistrationResult
from tasks.alert import alert_on_failure
from tasks.cooldown import claim_retrain, confirm_retrain_claim, release_retrain_claim
from tasks.evaluate import evaluate_model, find_champion
from tasks.featurize import build_features
from tasks.ingest import check_training_size, identify_batch, load_batch
from tasks.publish import publish_event
from tasks.register import find_registered_retrain, register_model
from tasks.retirement import is_model_retired
from tasks.spec import load_model_spec
from tasks.train import fit_model, fit_model_on_dask
from tasks.tune import choose_params, log_tuning, tune_params
from tasks.validate import validate_batch


@flow(
    name="retrain", log_prints=True, on_completion=[confirm_retrain_claim],
    on_failure=[alert_on_failure, release_retrain_claim], on_crashed=[release_retrain_claim], on_cancellation=[release_retrain_claim],
)
def retrain(
    spec: str,
    batch_uri: str | None = None,
    reason: Literal["manual", "schedule", "drift"] = "manual",
    tune: bool | None = None,
    allow_small: bool = False,
) -> RegistrationResult | None:
    """Train a challenger for the model described by ``spec`` and register it in MLflow.

    ``batch_uri``: one parquet/CSV object, or a prefix ending in ``/`` (the spec's retrain window of
    landed batches); empty means the spec's window prefix. ``reason``: manual, schedule or drift
    (drift-triggered retrains respect the spec's cooldown; a retired model retrains only by hand). ``tune``: run the Optuna study first
    (default: the spec's ``tuning.enabled``). ``allow_small``: register even when the training set has
    fewer than half the champion's training rows (otherwise such a retrain fails, saying so, before fitting).
    """
    model_spec = load_model_spec(spec)
    if reason != "manual" and is_model_retired(model_spec):
        return None
    tuned = model_spec.tuning.enabled if tune is None else tune
    champion = find_champion(model_spec)
    # Cache hits are decided on keys: an unchanged batch already trained on is not read at all. A hit
    # trains nothing, so it neither claims nor uses up the cooldown, which bounds how often a model trains.
    earlier = find_registered_retrain(identify_batch(batch_uri, model_spec), model_spec, tuned)
    if earlier is not None:
        check_training_size(earlier.train_rows, champion, allow_small)
        return earlier
    if not claim_retrain(model_spec, reason).allowed:
        return None
    tuning = None
    if model_spec.model.engine == "dask":
        # Read, validated, split and trained on the cluster: what comes back is evaluated and registered as below.
        on_cluster = fit_model_on_dask(batch_uri, model_spec, tuned)
        batch, features, trained = on_cluster.batch, on_cluster.features, on_cluster.train
        check_training_size(features.sizes["train"], champion, allow_small)
    else:
        batch = load_batch(batch_uri, model_spec)
        validate_batch(batch, model_spec)
        features = build_features(batch, model_spec)
        check_training_size(features.sizes["train"], champion, allow_small)
        if tuned:
            tuning = choose_params(log_tuning(tune_params(features, model_spec), model_spec), model_spec)
        trained = fit_model(features, model_spec, tuning.params if tuning else None)
    evaluation = evaluate_model(trained, features, model_spec, champion)
    registration = register_model(model_spec, trained, evaluation, features, batch, tuning=tuning)
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
