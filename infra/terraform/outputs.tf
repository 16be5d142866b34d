# What the services' settings need (LEANOPS_S3_BUCKET, LEANOPS_SQS_QUEUE_NAME, ...) and the roles to give them.
output "bucket" {
  value = aws_s3_bucket.data.bucket
}

output "queue_url" {
  value = aws_sqs_queue.batches.id
}

output "dead_letter_queue_url" {
  value = aws_sqs_queue.batches_dead.id
}

output "worker_role_arn" {
  value = aws_iam_role.worker.arn
}

output "bridge_role_arn" {
  value = aws_iam_role.bridge.arn
}

output "mlflow_role_arn" {
  value = aws_iam_role.mlflow.arn
}
