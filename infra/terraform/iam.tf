# Least-privilege roles. Each statement names its actions one by one and scopes them to a queue or a
# prefix of the bucket; tests/test_infra_terraform.py fails on a wildcard action or an unscoped resource.
#
# - workers read landed batches, read and write drift histories, the processed manifest, Prefect's
#   results and cache records and the shared state; MLflow artifacts go through MLflow's proxy, so
#   workers have no right on the artifact prefix;
# - the S3 bridge only reads and deletes queue messages and dead-letters unreadable ones: no S3 right;
# - the MLflow server alone reads and writes the artifact prefix.

locals {
  bucket_arn = aws_s3_bucket.data.arn
}

# --- workers -------------------------------------------------------------------------------------

data "aws_iam_policy_document" "worker" {
  statement {
    sid       = "ReadLandedBatches"
    effect    = "Allow"
    actions   = ["s3:GetObject", "s3:GetObjectVersion"]
    resources = ["${local.bucket_arn}/${var.incoming_prefix}*"]
  }
  statement {
    sid     = "ReadWriteSharedState"
    effect  = "Allow"
    actions = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    resources = [
      "${local.bucket_arn}/${var.monitoring_prefix}*",
      "${local.bucket_arn}/${var.results_prefix}*",
      "${local.bucket_arn}/${var.state_prefix}*",
    ]
  }
  statement {
    sid       = "ListOwnPrefixes"
    effect    = "Allow"
    actions   = ["s3:ListBucket"]
    resources = [local.bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${var.incoming_prefix}*", "${var.monitoring_prefix}*", "${var.results_prefix}*", "${var.state_prefix}*"]
    }
  }
}

data "aws_iam_policy_document" "worker_trust" {
  statement {
    effect  = "Allow"
    actions = ["sts:AssumeRole"]
    principals {
      type        = "AWS"
      identifiers = var.worker_trusted_principal_arns
    }
  }
}

resource "aws_iam_role" "worker" {
  name               = "leanops-worker"
  assume_role_policy = data.aws_iam_policy_document.worker_trust.json
}

resource "aws_iam_policy" "worker" {
  name   = "leanops-worker"
  policy = data.aws_iam_policy_document.worker.json
}

resource "aws_iam_role_policy_attachment" "worker" {
  role       = aws_iam_role.worker.name
  policy_arn = aws_iam_policy.worker.arn
}

# --- the S3 bridge -------------------------------------------------------------------------------

data "aws_iam_policy_document" "bridge" {
  statement {
    sid       = "ConsumeNotifications"
    effect    = "Allow"
    actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueUrl", "sqs:GetQueueAttributes"]
    resources = [aws_sqs_queue.batches.arn]
  }
  statement {
    sid       = "DeadLetterUnreadable"
    effect    = "Allow"
    actions   = ["sqs:SendMessage", "sqs:GetQueueUrl", "sqs:GetQueueAttributes"]
    resources = [aws_sqs_queue.batches_dead.arn]
  }
}

data "aws_iam_policy_document" "bridge_trust" {
  statement {
    effect  = "Allow"
    actions = ["sts:AssumeRole"]
    principals {
      type        = "AWS"
      identifiers = var.bridge_trusted_principal_arns
    }
  }
}

resource "aws_iam_role" "bridge" {
  name               = "leanops-s3-bridge"
  assume_role_policy = data.aws_iam_policy_document.bridge_trust.json
}

resource "aws_iam_policy" "bridge" {
  name   = "leanops-s3-bridge"
  policy = data.aws_iam_policy_document.bridge.json
}

resource "aws_iam_role_policy_attachment" "bridge" {
  role       = aws_iam_role.bridge.name
  policy_arn = aws_iam_policy.bridge.arn
}

# --- the MLflow server (artifact proxy) ----------------------------------------------------------

data "aws_iam_policy_document" "mlflow" {
  statement {
    sid       = "ReadWriteArtifacts"
    effect    = "Allow"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    resources = ["${local.bucket_arn}/${var.mlflow_artifacts_prefix}*"]
  }
  statement {
    sid       = "ListArtifacts"
    effect    = "Allow"
    actions   = ["s3:ListBucket"]
    resources = [local.bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${var.mlflow_artifacts_prefix}*"]
    }
  }
}

data "aws_iam_policy_document" "mlflow_trust" {
  statement {
    effect  = "Allow"
    actions = ["sts:AssumeRole"]
    principals {
      type        = "AWS"
      identifiers = var.mlflow_trusted_principal_arns
    }
  }
}

resource "aws_iam_role" "mlflow" {
  name               = "leanops-mlflow"
  assume_role_policy = data.aws_iam_policy_document.mlflow_trust.json
}

resource "aws_iam_policy" "mlflow" {
  name   = "leanops-mlflow"
  policy = data.aws_iam_policy_document.mlflow.json
}

resource "aws_iam_role_policy_attachment" "mlflow" {
  role       = aws_iam_role.mlflow.name
  policy_arn = aws_iam_policy.mlflow.arn
}
