"""Settings that carry secrets never show them: a tracking URL's credentials go to MLflow's client only."""

from __future__ import annotations

from leanops.settings import Settings


def test_a_tracking_url_with_credentials_is_called_and_linked_without_them():
    settings = Settings(mlflow_tracking_uri="https://ops:s3cr%40t@mlflow.internal:8443/prefix")

    assert settings.resolved_mlflow_tracking_uri == "https://mlflow.internal:8443/prefix"
    assert settings.mlflow_client_env() == {"MLFLOW_TRACKING_USERNAME": "ops", "MLFLOW_TRACKING_PASSWORD": "s3cr@t"}
    assert "s3cr" not in repr(settings) and "s3cr" not in str(settings.model_dump_json())


def test_the_mlflow_password_setting_wins_over_credentials_in_the_url():
    settings = Settings(mlflow_tracking_uri="http://ops:old@127.0.0.1:5050", mlflow_password="new")

    assert settings.resolved_mlflow_tracking_uri == "http://127.0.0.1:5050"
    assert settings.mlflow_client_env() == {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": "new"}


def test_a_tracking_uri_without_credentials_is_used_as_given():
    assert Settings(mlflow_tracking_uri="sqlite:///tmp/mlflow.db").resolved_mlflow_tracking_uri == "sqlite:///tmp/mlflow.db"
    assert Settings(mlflow_tracking_uri="http://127.0.0.1:9").mlflow_client_env() == {}
    assert Settings(host="127.0.0.1", mlflow_port=5051).resolved_mlflow_tracking_uri == "http://127.0.0.1:5051"


def test_no_secret_setting_shows_in_the_settings_repr():
    secret = "sentinel0f3c"
    settings = Settings(
        slack_token=secret, postgres_url=f"postgresql://u:{secret}@db:5432", redis_url=f"redis://:{secret}@r:6379/1",
        prefect_auth_string=f"u:{secret}", mlflow_password=secret, mlflow_flask_secret_key=secret,
        optuna_storage=f"postgresql://u:{secret}@db/o", mlflow_tracking_uri=f"http://u:{secret}@m:5050",
    )

    assert secret not in repr(settings) and secret not in settings.model_dump_json()
