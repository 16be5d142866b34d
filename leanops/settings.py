"""Every setting of leanops, read from environment variables prefixed ``LEANOPS_``.

One model, no work at import time: call :func:`get_settings` where a value is needed.
The defaults describe the embedded single-machine stack started by ``infra/stack.py``.

Folders default to the working directory of the process that runs: the project checkout (in
production, the code a worker pulled), never the folder leanops happens to be installed in.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

# moto accepts any credentials, but boto3 refuses to sign a request without some: the local stack's
# processes, and any shell talking to the local endpoint, use these unless AWS credentials are set.
LOCAL_AWS_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "leanops", "AWS_SECRET_ACCESS_KEY": "leanops"}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LEANOPS_", env_file=".env", extra="ignore", frozen=True)

    # embedded: one machine, SQLite and local files (the default). production: Prefect and MLflow on
    # PostgreSQL, Prefect messaging on Redis, results, cache records and alert state in the object store,
    # basic auth on Prefect and MLflow (infra/stack.py starts this layout with `up --profile production`).
    profile: Literal["embedded", "production"] = "embedded"

    # Where local state lives (the stack's databases, artifacts, logs, pids; caches, journals).
    home: Path = Field(default_factory=lambda: Path.cwd() / ".leanops")
    # One YAML per model; read from the code that runs, so specs travel with it.
    specs_dir: Path = Field(default_factory=lambda: Path.cwd() / "specs")

    host: str = "127.0.0.1"
    prefect_port: int = 4200
    mlflow_port: int = 5050
    s3_port: int = 5055

    # None means "the local stack's service on the ports above".
    prefect_api_url: str | None = None
    # A secret when it carries credentials (https://user:password@host): leanops calls MLflow and builds links,
    # log lines and messages with the URL without them, and hands them to MLflow's client as its basic-auth
    # variables (mlflow_client_env; mlflow_password, when set, wins).
    mlflow_tracking_uri: SecretStr | None = None
    # Where MLflow stores artifacts when leanops starts the tracking server (file path or s3:// URI).
    mlflow_artifacts_destination: str | None = None
    # MLflow client requests: retries per call (task retries come on top) and the timeout of one request.
    mlflow_http_retries: int = 2
    mlflow_http_timeout_seconds: int = 60

    s3_endpoint_url: str | None = None
    s3_use_local_endpoint: bool = True
    s3_bucket: str = "leanops"
    s3_incoming_prefix: str = "incoming/"
    s3_incoming_suffix: str = ".parquet"
    s3_bucket_allow_list: list[str] = Field(default_factory=list)
    # Batch scoring (flows/score.py): an object landing under <bucket>/<s3_scoring_prefix><model>/ is scored
    # by the model's champion; its predictions go under <bucket>/<s3_scoring_output_prefix><model>/. Neither
    # lies under the incoming prefix, so no drift check or retrain window ever reads them.
    s3_scoring_prefix: str = "to-score/"
    s3_scoring_suffixes: list[str] = Field(default_factory=lambda: [".parquet", ".csv"])
    s3_scoring_output_prefix: str = "scored/"
    scoring_chunk_rows: int = 50_000  # rows scored at a time: memory follows this, not the file's size
    sqs_queue_name: str = "leanops-batches"
    sqs_dead_letter_queue_name: str = "leanops-batches-dead"
    # A received message stays hidden this long; if the bridge dies before deleting it, it reappears.
    sqs_visibility_timeout_seconds: int = 30
    sqs_wait_seconds: int = 10  # long-poll wait of one receive call
    # SQS moves a message that failed this many receives to the dead-letter queue by itself.
    sqs_max_receive_count: int = 10
    bridge_max_backoff_seconds: float = 30.0

    # A batch object larger than this is refused (BatchTooLarge) before it is read. Unset: what the
    # process's memory limit (RLIMIT_DATA / RLIMIT_AS, e.g. `ulimit -d` on the worker) leaves free,
    # divided by batch_memory_factor; no limit set, no refusal.
    max_batch_bytes: int | None = None
    # Memory a batch takes while read, per byte of its file (bytes, decoded columns, the DataFrame).
    batch_memory_factor: float = 6.0

    work_pool_name: str = "leanops-pool"
    worker_health_port: int = 5061
    aws_region: str = "us-east-1"

    # Where drift histories live (s3:// URI or local folder); default: the bucket's monitoring/ prefix.
    monitoring_root: str | None = None
    # Rows a side of the Evidently report a drift check attaches (after its verdict is out): Evidently costs
    # ~5x the check per row (18.5 s and 1.1 GB on the check's 100k-row sample of a 1M x 50 batch). The verdict
    # always comes from the check's own sample (spec drift.sample_cap); 20,000 rows still draw every
    # distribution of the report without visible noise, so fewer are refused.
    drift_report_sample_rows: int = Field(default=20_000, ge=20_000)

    # Serving (leanops.live, leanops.prediction_log). Live per-version summaries of the endpoints, which
    # promote's live gate reads; default: the bucket's serving/live/ prefix.
    serving_live_root: str | None = None
    serving_live_publish_seconds: float = 10.0
    # The prediction log holds customer data (the request rows): kept this many days, then
    # `leanops predictions prune` deletes it. Inspection stream default: the bucket's predictions/ prefix;
    # the drift sample lands under <incoming prefix><model>/_predictions/sample/ (drift-monitor reads it).
    prediction_log_root: str | None = None
    prediction_log_retention_days: float = Field(default=30.0, gt=0)
    prediction_log_flush_seconds: float = 60.0
    # Each drift check's MLflow run (its Evidently report and scores) is kept this many days, then
    # `leanops drift prune` deletes it.
    drift_report_retention_days: float = Field(default=90.0, gt=0)
    # Rows a log keeps in memory per stream while the store cannot be written (newest kept, the rest
    # dropped and counted); the sample stream keeps at least two of its batches.
    prediction_log_max_rows: int = 5000

    # Where Prefect keeps task results and cache records: a local folder, or the slug of an s3-bucket
    # block (prefect-aws) that every worker reads, so a task cached on one worker is a hit on another.
    # Default: <home>/prefect-results embedded, s3-bucket/<database_prefix>-results in production
    # (infra.stack creates the block from the S3 settings, under prefix prefect-results/). Payloads sit at
    # its top, cache-record metadata under cache-records/; both are data, never pickles (tasks/_serializer.py).
    result_storage: str | None = None

    # --- production profile (profile=production; unused by the embedded stack) ---
    # The PostgreSQL server without a database name; leanops creates <database_prefix>_prefect, _mlflow,
    # _mlflow_auth and _optuna on it. A password in this URL makes it a secret, as every URL here.
    postgres_url: SecretStr = SecretStr("postgresql://postgres@127.0.0.1:5432")
    database_prefix: str = "leanops"
    # Create the Prefect and MLflow databases from empty, migrated templates kept on the PostgreSQL server
    # (leanops_template_<purpose>_<hash of the Prefect and MLflow versions>), built on first use: later
    # starts skip both migrations (~25-40 s of CPU here). For machines that create and drop these
    # databases often (tests, CI); a long-lived deployment migrates once and gains nothing.
    database_templates: bool = False
    # Prefect's messaging broker and cache, causal ordering, lease storage and Docket. The database index
    # is ours alone: the Redis server may be shared (production: requirepass/ACL user + rediss:// TLS).
    redis_url: SecretStr = SecretStr("redis://127.0.0.1:6379/11")
    # The second Prefect API process (the first listens on prefect_port): there is no load balancer
    # here, so worker A and the S3 bridge use the first, worker B the second.
    prefect_second_port: int = 4202
    worker_second_health_port: int = 5062
    # Prefect's basic auth, "user:password": the server checks it, every client sends it (one shared credential).
    prefect_auth_string: SecretStr | None = None
    # MLflow's basic-auth app: the admin account it creates on first start, which leanops' clients use.
    mlflow_username: str = "admin"
    mlflow_password: SecretStr | None = None
    # How long MLflow's basic-auth app keeps a verified (user, password) in memory (its auth_cache_ttl_seconds):
    # without it every request pays the password hash, ~126 ms of CPU with werkzeug's scrypt here, and the
    # MLflow server was the busiest process of the 25-model simulation. A changed or deleted account may
    # still pass on another server process for this long; 0 checks every request.
    mlflow_auth_cache_seconds: int = Field(default=60, ge=0)
    # Each machine keeps the registered versions' artifacts it has read (<home>/cache/mlflow-artifacts/):
    # a version unused this many days goes, then the least recently used while the total is over the cap.
    # Size the cap above the working set (models a worker checks x one version's artifacts), or every
    # check downloads its champion again; `leanops cache prune` prunes by hand.
    artifact_cache_max_mb: float = Field(default=5_000.0, gt=0)
    artifact_cache_keep_days: float = Field(default=7.0, gt=0)
    # Signs MLflow's UI sessions (Flask); a fresh random one per start when unset.
    mlflow_flask_secret_key: SecretStr | None = None
    # Alert de-duplication and Slack thread state: a local JSON file (default) or s3://bucket/key.
    alert_state_uri: str | None = None

    slack_token: SecretStr | None = None
    slack_channel: str = "#mlops-alerts"
    slack_base_url: str = "https://slack.com/api/"
    alert_cooldown_minutes: float = 60.0
    # "HH:MM-HH:MM" in UTC during which alerts are logged, not sent.
    alert_maintenance_window: str | None = None

    # Per-model locks (Prefect global concurrency limits) are held with a lease that a live holder renews
    # every 3/4 of it; a holder that died frees its slot when the lease runs out (plus the server's
    # repossessor loop, 15 s). It must stay well under the 300 s that a waiter waits for a lock.
    lock_lease_seconds: float = Field(default=60.0, ge=60.0, le=200.0)  # the server refuses under 60

    # journal:<path>, memory or a database URL (a secret: it may carry a password).
    optuna_storage: SecretStr | None = None
    # Training with spec `model.engine: dask`: the scheduler to use, or (unset) a LocalCluster per retrain
    # with dask_workers worker processes of dask_threads_per_worker threads, each capped at
    # dask_worker_memory_limit (Dask's own format: "1.5GB", or bytes); what Dask does at the cap: it spills
    # to disk past 60%, pauses the worker at 80% and restarts it at 95%.
    dask_scheduler_address: str | None = None
    dask_connect_timeout_seconds: float = 30.0
    dask_workers: int = Field(default=2, ge=1)
    dask_threads_per_worker: int = Field(default=1, ge=1)
    dask_worker_memory_limit: str = "1.5GB"
    # Fit rows brought back from the cluster: the drift reference, the input example and the baseline's fit.
    dask_sample_rows: int = Field(default=100_000, ge=1_000)

    # The fork server (deployments/forkserver.py): flow runs start in a process forked from one that
    # has already imported these, instead of importing them anew (4-10 s here) before reaching Running.
    # Third-party modules only: leanops, flows and tasks are imported per run, fresh from the run's code.
    fork_server_socket: Path | None = None  # default: <home>/run/forkserver.sock
    fork_server_preload: list[str] = Field(default_factory=lambda: [
        "prefect.engine", "prefect.flow_engine", "prefect.deployments.steps", "prefect.cache_policies",
        "numpy", "pandas", "pyarrow", "pyarrow.parquet", "scipy.stats", "sklearn.pipeline", "sklearn.linear_model",
        "sklearn.metrics", "xgboost", "pydantic_settings", "yaml", "boto3", "botocore.client", "mlflow",
        "mlflow.sklearn", "evidently", "optuna", "slack_sdk", "skops.io",
    ])

    # The online endpoint (serving/, `leanops serve`): every model of specs_dir, on host:serving_port.
    serving_port: int = 5070
    # Worker processes (uvicorn --workers); each holds its own copy of the champions in memory.
    serving_workers: int = 1
    # Fallback to the promoted / rolled_back events: each alias is read from MLflow at most this often.
    serving_alias_check_seconds: float = 30.0
    # Follow leanops.model.promoted / rolled_back events from Prefect (off: the alias check alone).
    serving_follow_events: bool = True
    # A request carrying more rows is refused (422) rather than holding a worker for long.
    serving_max_rows_per_request: int = 10_000
    # Requests that arrive while a prediction runs are scored together, up to this many rows at once.
    serving_max_batch_rows: int = 512

    def state_dir(self, *parts: str) -> Path:
        return self.home.joinpath(*parts)

    @property
    def resolved_prefect_api_url(self) -> str:
        return self.prefect_api_url or f"http://{self.host}:{self.prefect_port}/api"

    @property
    def resolved_mlflow_tracking_uri(self) -> str:
        """The tracking server's URL without credentials: what MLflow's client calls and what links show."""
        return without_credentials(self._configured_tracking_uri)[0]

    @property
    def _configured_tracking_uri(self) -> str:
        if self.mlflow_tracking_uri is None or not self.mlflow_tracking_uri.get_secret_value():
            return f"http://{self.host}:{self.mlflow_port}"
        return self.mlflow_tracking_uri.get_secret_value()

    @property
    def resolved_fork_server_socket(self) -> Path:
        return self.fork_server_socket or self.home / "run" / "forkserver.sock"

    @property
    def resolved_s3_endpoint_url(self) -> str | None:
        if self.s3_endpoint_url:
            return self.s3_endpoint_url
        return f"http://{self.host}:{self.s3_port}" if self.s3_use_local_endpoint else None

    @property
    def uses_local_s3(self) -> bool:
        """True when S3 is the local stack's own endpoint (moto), which any credentials open."""
        return self.s3_use_local_endpoint and not self.s3_endpoint_url

    @property
    def resolved_monitoring_root(self) -> str:
        return self.monitoring_root or f"s3://{self.s3_bucket}/monitoring"

    @property
    def resolved_serving_live_root(self) -> str:
        return self.serving_live_root or f"s3://{self.s3_bucket}/serving/live"

    @property
    def resolved_prediction_log_root(self) -> str:
        return self.prediction_log_root or f"s3://{self.s3_bucket}/predictions"

    @property
    def resolved_scoring_output_root(self) -> str:
        return f"s3://{self.s3_bucket}/{self.s3_scoring_output_prefix}"

    @property
    def is_production(self) -> bool:
        return self.profile == "production"

    def database_url(self, purpose: str, driver: str = "postgresql") -> str:
        """URL of the production database for ``purpose`` (prefect, mlflow, mlflow_auth, optuna)."""
        return self.named_database_url(self.database_name(purpose), driver)

    def named_database_url(self, name: str, driver: str = "postgresql") -> str:
        """URL of the database ``name`` on the production PostgreSQL server."""
        base = self.postgres_url.get_secret_value().rstrip("/")
        scheme, rest = base.split("://", 1)
        return f"{driver if scheme.startswith('postgres') else scheme}://{rest}/{quote(name)}"

    def database_name(self, purpose: str) -> str:
        return f"{self.database_prefix}_{purpose}"

    @property
    def prefect_api_urls(self) -> tuple[str, ...]:
        """Every Prefect API process this stack runs (production: two, no load balancer in between)."""
        first = self.resolved_prefect_api_url
        if not self.is_production or self.prefect_api_url:
            return (first,)
        return first, f"http://{self.host}:{self.prefect_second_port}/api"

    @property
    def resolved_result_storage(self) -> str:
        if self.result_storage:
            return self.result_storage
        if self.is_production:
            # Block names take lowercase letters, digits and dashes only.
            return f"s3-bucket/{self.database_prefix.lower().replace('_', '-')}-results"
        return str(self.state_dir("prefect-results"))

    @property
    def result_storage_is_block(self) -> bool:
        """A block slug ("s3-bucket/name"), not a folder (folders are absolute, or start with . or ~)."""
        storage = self.resolved_result_storage
        return storage.count("/") == 1 and not storage.startswith(("/", ".", "~"))

    @property
    def resolved_mlflow_artifacts_destination(self) -> str | None:
        if self.mlflow_artifacts_destination or not self.is_production:
            return self.mlflow_artifacts_destination
        return f"s3://{self.s3_bucket}/mlflow"

    @property
    def resolved_alert_state_uri(self) -> str:
        if self.alert_state_uri:
            return self.alert_state_uri
        if self.is_production:
            return f"s3://{self.s3_bucket}/state/notify/slack-alerts.json"
        return str(self.state_dir("notify", "slack-alerts.json"))

    @property
    def resolved_optuna_storage(self) -> SecretStr:
        if self.optuna_storage:
            return self.optuna_storage
        if self.is_production:
            return SecretStr(self.database_url("optuna"))
        return SecretStr(f"journal:{self.state_dir('optuna', 'journal.log')}")

    def prefect_client_env(self, api_url: str | None = None) -> dict[str, str]:
        """The PREFECT_* variables a Prefect client (worker, flow run, bridge, CLI) needs for these settings:
        the API, its auth string and where task results and cache records go."""
        env = {"PREFECT_API_URL": api_url or self.resolved_prefect_api_url}
        if self.prefect_auth_string:
            env["PREFECT_API_AUTH_STRING"] = self.prefect_auth_string.get_secret_value()
        if self.result_storage_is_block:
            env["PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK"] = self.resolved_result_storage
        else:
            env["PREFECT_LOCAL_STORAGE_PATH"] = self.resolved_result_storage
        return env

    def mlflow_client_env(self) -> dict[str, str]:
        """MLflow's client credentials (its basic-auth app), read by MLflow from the environment: mlflow_password,
        else those written into mlflow_tracking_uri."""
        if self.mlflow_password:
            return {"MLFLOW_TRACKING_USERNAME": self.mlflow_username, "MLFLOW_TRACKING_PASSWORD": self.mlflow_password.get_secret_value()}
        _, credentials = without_credentials(self._configured_tracking_uri)
        if credentials is None:
            return {}
        return {"MLFLOW_TRACKING_USERNAME": credentials[0], "MLFLOW_TRACKING_PASSWORD": credentials[1]}


def without_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """``url`` without its ``user:password@`` part, and that (user, password), if it had one."""
    parts = urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    if not at:
        return url, None
    user, _, password = userinfo.partition(":")
    return urlunsplit(parts._replace(netloc=host)), (unquote(user), unquote(password))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reset_settings_cache() -> None:
    """Forget the cached settings (tests and the stack change env vars at run time)."""
    get_settings.cache_clear()
