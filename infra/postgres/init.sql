-- Runs once, on the first start of an empty data volume (the image's docker-entrypoint-initdb.d).
-- leanops_prefect is POSTGRES_DB; these are the others of the production profile (infra/production.py).
CREATE DATABASE leanops_mlflow;
CREATE DATABASE leanops_mlflow_auth;
CREATE DATABASE leanops_optuna;
