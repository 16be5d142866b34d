"""The retrain stages as a plain script, without Prefect: the benchmark's baseline.

Same library calls, same MLflow logging and registration as flows/retrain.py.
"""

from __future__ import annotations

from leanops import contract, events, features, lineage, modeling, registration, registry, storage
from leanops.results import Batch, RegistrationResult
from leanops.spec import load_spec


def plain_retrain(spec_path: str, batch_uri: str) -> RegistrationResult:
    spec = load_spec(spec_path)
    frame, fingerprint = storage.read_table(batch_uri)
    batch = Batch(batch_uri, fingerprint, frame, (batch_uri,))
    contract.validate_batch(frame, spec, batch_uri, fingerprint)
    feature_set = features.build_feature_set(batch, spec)
    trained = modeling.fit_models(feature_set, spec)
    champion = registry.get_alias(spec.registered_model_name, registry.CHAMPION)
    evaluation = modeling.evaluate(
        trained, feature_set, spec,
        champion=registry.load_model(champion) if champion else None,
        champion_version=champion.version if champion else None,
    )
    run_lineage = lineage.build_lineage(batch_uri, fingerprint, spec.spec_hash, None, batch.sources)
    result = registration.register_training(
        spec, trained, evaluation, feature_set, run_lineage, lineage.training_key(run_lineage, trained.fingerprint)
    )
    events.model_registered(result.model_name, result.version, result.run_id, batch_uri, spec.metric.primary, evaluation.model[spec.metric.primary])
    return result
