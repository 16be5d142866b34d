variable "region" {
  description = "AWS region of the bucket and the queues (LEANOPS_AWS_REGION)."
  type        = string
  default     = "us-east-1"
}

variable "bucket_name" {
  description = "The data bucket (LEANOPS_S3_BUCKET): landed batches, drift histories, Prefect results, MLflow artifacts."
  type        = string
}

variable "incoming_prefix" {
  description = "Where batches land (LEANOPS_S3_INCOMING_PREFIX); only these objects notify the queue."
  type        = string
  default     = "incoming/"
}

variable "incoming_suffix" {
  description = "Suffix of the batch objects that notify the queue (LEANOPS_S3_INCOMING_SUFFIX)."
  type        = string
  default     = ".parquet"
}

variable "monitoring_prefix" {
  description = "Drift histories and the processed-batch manifest (LEANOPS_MONITORING_ROOT under the bucket)."
  type        = string
  default     = "monitoring/"
}

variable "results_prefix" {
  description = "Prefect task results and cache records shared by every worker (LEANOPS_RESULT_STORAGE under the bucket)."
  type        = string
  default     = "prefect-results/"
}

variable "state_prefix" {
  description = "Small shared state of the workers (e.g. Slack de-duplication), read and written by every worker."
  type        = string
  default     = "state/"
}

variable "mlflow_artifacts_prefix" {
  description = "MLflow's artifact destination; only the MLflow server reads and writes it (clients use its proxy)."
  type        = string
  default     = "mlflow/"
}

variable "queue_name" {
  description = "Queue of the bucket notifications (LEANOPS_SQS_QUEUE_NAME)."
  type        = string
  default     = "leanops-batches"
}

variable "dead_letter_queue_name" {
  description = "Where unreadable or repeatedly failing notifications go (LEANOPS_SQS_DEAD_LETTER_QUEUE_NAME)."
  type        = string
  default     = "leanops-batches-dead"
}

variable "max_receive_count" {
  description = "Receives before SQS moves a message to the dead-letter queue (LEANOPS_SQS_MAX_RECEIVE_COUNT)."
  type        = number
  default     = 10
}

variable "visibility_timeout_seconds" {
  description = "A received message stays hidden this long (LEANOPS_SQS_VISIBILITY_TIMEOUT_SECONDS)."
  type        = number
  default     = 30
}

variable "noncurrent_version_days" {
  description = "Days an overwritten or deleted object version is kept before it expires."
  type        = number
  default     = 90
}

variable "worker_trusted_principal_arns" {
  description = "Principals allowed to assume the worker role: the worker machines' instance role, or an EKS service account's role."
  type        = list(string)
}

variable "bridge_trusted_principal_arns" {
  description = "Principals allowed to assume the S3 bridge role."
  type        = list(string)
}

variable "mlflow_trusted_principal_arns" {
  description = "Principals allowed to assume the MLflow server role."
  type        = list(string)
}
