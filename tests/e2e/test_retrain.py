"""The retrain flow end to end against a real Prefect server, a real MLflow server and moto's S3."""

from __future__ import annotations

import pytest

from leanops import batches, datasets, events, registration, registry, storage, study_log
from leanops.errors import ContractViolation, RegistrationFailed
from leanops.spec import load_spec
from support import artifacts_of, spec_copy, task_run_states, wait_for_events

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def trained(stack, tmp_path_factory):
    """One real retrain on 6,000 flights of January-June read from S3, shared by the tests below."""
    from flows.retrain import retrain

    folder = tmp_path_factory.mktemp("retrain")
    spec_path = spec_copy(folder, "retrain-e2e")
    uri = f"s3://{stack.s3_bucket}/incoming/retrain-e2e/2013-h1.parquet"
    storage.write_table(datasets.flights_sample(range(1, 7), rows_per_month=1000, seed=3), uri)
    state = retrain(spec=str(spec_path), batch_uri=uri, return_state=True)
    return {"spec_path": spec_path, "spec": load_spec(spec_path), "uri": uri, "state": state, "result": state.result()}


def test_retrain_registers_a_challenger_with_lineage(trained, stack):
    result = trained["result"]
    assert result.created
    challenger = registry.get_alias("retrain-e2e", registry.CHALLENGER)
    assert challenger is not None and challenger.version == result.version
    tags = challenger.tags
    data_fingerprint = storage.read_table(trained["uri"])[1]
    assert tags["leanops.data_uri"] == trained["uri"]
    assert tags["leanops.data_fingerprint"] == data_fingerprint  # the content's SHA-256, not the ETag
    assert tags["leanops.data_identity"] == batches.identify_batch(trained["uri"], trained["spec"].retrain_window).identity
    assert tags["leanops.spec_hash"] == trained["spec"].spec_hash
    assert tags["leanops.flow_run_id"] == str(trained["state"].state_details.flow_run_id)
    assert len(tags["leanops.git_commit"]) >= 7
    assert challenger.metrics["roc_auc"] > 0.6
    assert {"baseline_roc_auc", "rows_holdout", "rows_excluded_missing_target"} <= challenger.metrics.keys()


def test_registered_model_takes_raw_columns_and_carries_its_reference(trained):
    info = registry.get_alias("retrain-e2e", registry.CHALLENGER)
    reference = registry.load_reference_sample(info)
    model = registry.load_model(info)
    probabilities = model.predict_proba(reference.drop(columns=["delayed_15"]).head(50))
    assert probabilities.shape == (50, 2)
    assert len(reference) > 3000 and "delayed_15" in reference


def test_registration_emits_model_registered(trained, stack):
    found = wait_for_events(stack.resolved_prefect_api_url, events.MODEL_REGISTERED, events.model_resource_id("retrain-e2e"))
    assert len(found) == 1
    assert found[0]["payload"]["version"] == trained["result"].version
    assert found[0]["payload"]["data_uri"] == trained["uri"]


def test_second_run_on_the_same_data_reads_nothing_and_registers_nothing(trained, stack):
    from flows.retrain import retrain

    versions_before = registry.list_versions("retrain-e2e")
    state = retrain(spec=str(trained["spec_path"]), batch_uri=trained["uri"], return_state=True)
    again = state.result()
    assert not again.created
    assert again.version == trained["result"].version
    assert registry.list_versions("retrain-e2e") == versions_before
    # Decided on the object's ETag and the registry's retrain key: the batch is never downloaded, no
    # cached frame or model is loaded back (each would show as a task run of the flow).
    states = task_run_states(stack.resolved_prefect_api_url, state.state_details.flow_run_id, expect=("find_registered_retrain",))
    assert states["identify_batch"] == states["find_registered_retrain"] == "Completed", states
    assert not {"load_batch", "validate_batch", "build_features", "fit_model", "evaluate_model", "register_model"} & states.keys(), states


def test_a_rerun_that_trains_nothing_leaves_the_cooldown_alone(trained, stack):
    """The cooldown bounds how often a model trains: a cache hit claims nothing (no lock taken, no task run
    of the claim), does not restart the cooldown, and a drift retrain of data already trained on answers
    with the registered version even inside the cooldown."""
    from flows.retrain import retrain
    from tasks.cooldown import cooldown_record

    before = cooldown_record("retrain-e2e")
    assert before.last_retrain_at is not None and not before.running  # the first run counted
    state = retrain(spec=str(trained["spec_path"]), batch_uri=trained["uri"], reason="drift", return_state=True)

    assert state.result().version == trained["result"].version and not state.result().created
    states = task_run_states(stack.resolved_prefect_api_url, state.state_details.flow_run_id, expect=("find_registered_retrain",))
    assert "claim_retrain" not in states, states
    assert cooldown_record("retrain-e2e") == before


def test_the_same_content_under_a_new_identity_is_read_and_its_stages_come_from_the_cache(trained, stack, tmp_path):
    from flows.retrain import retrain

    copy = str(tmp_path / "2013-h1.parquet")  # the same bytes at another address: another identity, same content
    storage.write_bytes(copy, storage.read_bytes(trained["uri"]))
    versions_before = [v.version for v in registry.list_versions("retrain-e2e")]

    state = retrain(spec=str(trained["spec_path"]), batch_uri=copy, return_state=True)

    assert not state.result().created and state.result().version == trained["result"].version
    assert [v.version for v in registry.list_versions("retrain-e2e")] == versions_before
    stages = ("load_batch", "validate_batch", "build_features", "fit_model", "evaluate_model", "register_model")
    states = task_run_states(stack.resolved_prefect_api_url, state.state_details.flow_run_id, expect=stages)
    assert states["load_batch"] == states["register_model"] == "Completed", states
    assert all(states[stage] == "Cached" for stage in ("validate_batch", "build_features", "fit_model", "evaluate_model")), states
    # The registration now answers to this identity too: the next rerun of the copy reads nothing.
    rerun = retrain(spec=str(trained["spec_path"]), batch_uri=copy, return_state=True)
    assert "load_batch" not in task_run_states(stack.resolved_prefect_api_url, rerun.state_details.flow_run_id, expect=("find_registered_retrain",))


def test_a_rejected_batch_changes_nothing(trained, stack, tmp_path):
    from flows.retrain import retrain

    bad = datasets.flights_sample([7], rows_per_month=1500, seed=4).drop(columns=["carrier"])
    bad_uri = f"s3://{stack.s3_bucket}/incoming/retrain-e2e/2013-07-bad.parquet"
    storage.write_table(bad, bad_uri)
    versions_before = registry.list_versions("retrain-e2e")
    state = retrain(spec=str(trained["spec_path"]), batch_uri=bad_uri, return_state=True)
    assert state.is_failed()
    with pytest.raises(ContractViolation, match="missing column 'carrier'"):
        state.result()
    assert registry.list_versions("retrain-e2e") == versions_before
    assert registry.get_alias("retrain-e2e", registry.CHALLENGER).version == trained["result"].version
    states = task_run_states(stack.resolved_prefect_api_url, state.state_details.flow_run_id, expect=("validate_batch",))
    assert states["validate_batch"] == "Failed"  # not "Retrying": a contract violation is never retried
    assert "fit_model" not in states


def test_a_failing_mlflow_call_leaves_no_version_and_no_moved_alias(trained):
    from leanops import features, lineage, modeling
    from leanops.results import Batch

    spec = trained["spec"]
    frame, fingerprint = storage.read_table(trained["uri"])
    feature_set = features.build_feature_set(Batch(trained["uri"], fingerprint, frame), spec)
    fitted = modeling.fit_models(feature_set, spec, {"n_estimators": 20})
    evaluation = modeling.evaluate(fitted, feature_set, spec)
    run_lineage = lineage.build_lineage(trained["uri"], fingerprint, spec.spec_hash, None)
    versions_before = registry.list_versions("retrain-e2e")
    # MLflow refuses the reserved alias "latest": the last registration step fails for real.
    with pytest.raises(RegistrationFailed, match="nothing was registered"):
        registration.register_training(spec, fitted, evaluation, feature_set, run_lineage, "failing-key", alias="latest")
    assert registry.list_versions("retrain-e2e") == versions_before
    assert registry.get_alias("retrain-e2e", registry.CHALLENGER).version == trained["result"].version
    assert registry.find_by_training_key("retrain-e2e", "failing-key") is None


def test_retrain_with_tuning_trains_on_the_study_best_params(stack, tmp_path):
    from flows.retrain import retrain

    # Any gain counts here: the study's best must reach the model (the threshold has its own test below).
    spec_path = spec_copy(tmp_path, "retrain-tuned", tuning__n_trials=4, tuning__n_estimators=120,
                          tuning__timeout_seconds=120, tuning__min_improvement=0.0)
    uri = str(tmp_path / "h1.parquet")
    storage.write_table(datasets.flights_sample(range(1, 7), rows_per_month=700, seed=11), uri)
    state = retrain(spec=str(spec_path), batch_uri=uri, tune=True, return_state=True)
    result = state.result()
    assert result.created
    # The study's trials moved a progress bar in the UI, to the last one (issue 13).
    progress = artifacts_of(stack.resolved_prefect_api_url, state.state_details.flow_run_id)["retrain-tuned-tuning-progress"]
    assert progress["type"] == "progress" and progress["data"] == 100.0
    assert "4 of 4 trials finished; best roc_auc so far 0." in progress["description"], progress["description"]
    info = registry.get_alias("retrain-tuned", registry.CHALLENGER)
    study_runs = registry.client().search_runs(
        [registry.client().get_experiment_by_name("leanops/retrain-tuned").experiment_id],
        filter_string=f"tags.`{study_log.STUDY_TAG}` LIKE '%'",
    )
    assert len(study_runs) == 1
    best = {k[len("leanops.best."):]: v for k, v in study_runs[0].data.tags.items() if k.startswith("leanops.best.")}
    params = registry.client().get_run(info.run_id).data.params
    assert best and all(params[name] == value for name, value in best.items() if name in params), (best, params)
    assert params["n_estimators"] == best["n_estimators"]
    tags = registry.client().get_run(info.run_id).data.tags
    assert tags["leanops.tuning_study"] == study_runs[0].data.tags[study_log.STUDY_TAG]
    assert tags["leanops.params_choice"].startswith("tuned parameters")


def test_retrain_keeps_the_specs_parameters_when_tuning_gains_too_little(stack, tmp_path):
    from flows.retrain import retrain

    spec_path = spec_copy(tmp_path, "retrain-tuned-kept", tuning__n_trials=3, tuning__n_estimators=120,
                          tuning__timeout_seconds=120, tuning__min_improvement=0.5)  # no study gains 0.5 ROC AUC
    uri = str(tmp_path / "h1.parquet")
    storage.write_table(datasets.flights_sample(range(1, 7), rows_per_month=700, seed=11), uri)

    result = retrain(spec=str(spec_path), batch_uri=uri, tune=True)

    assert result.created
    params = registry.client().get_run(registry.get_alias("retrain-tuned-kept", registry.CHALLENGER).run_id).data.params
    spec_params = load_spec(spec_path).model.params
    assert params["n_estimators"] == str(spec_params["n_estimators"])  # 300, not the study's early-stopped count
    assert params["max_depth"] == str(spec_params["max_depth"])
    choice = registry.client().get_run(registry.get_alias("retrain-tuned-kept", registry.CHALLENGER).run_id).data.tags["leanops.params_choice"]
    assert "below the 0.5 required" in choice
