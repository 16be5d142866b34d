# The data bucket: versioned (an overwritten batch, result or artifact can be recovered and every
# version id is part of the batch's fingerprint), private, encrypted, TLS only.
resource "aws_s3_bucket" "data" {
  # checkov:skip=CKV_AWS_18:Access logging needs a second bucket in the team's log account; CloudTrail data events are the alternative. Add it where your organisation keeps such logs.
  # checkov:skip=CKV_AWS_144:Cross-region replication doubles storage for a team of three; versioning covers overwrites and deletes. Enable it when the region itself is a risk you must cover.
  # checkov:skip=CKV_AWS_145:SSE-S3 (AES256) rather than a customer-managed KMS key: a CMK adds a key policy to keep in step with every role below. Use KMS if your compliance requires it.
  bucket = var.bucket_name
}

resource "aws_s3_bucket_versioning" "data" {
  bucket = aws_s3_bucket.data.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "data" {
  bucket = aws_s3_bucket.data.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_public_access_block" "data" {
  bucket                  = aws_s3_bucket.data.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "data" {
  bucket = aws_s3_bucket.data.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "data" {
  bucket     = aws_s3_bucket.data.id
  depends_on = [aws_s3_bucket_versioning.data]

  rule {
    id     = "expire-old-versions"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_days
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }
}

# Refuse every request that does not use TLS. (A Deny may be broad: it only takes rights away.)
data "aws_iam_policy_document" "data_bucket" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.data.arn, "${aws_s3_bucket.data.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "data" {
  bucket     = aws_s3_bucket.data.id
  policy     = data.aws_iam_policy_document.data_bucket.json
  depends_on = [aws_s3_bucket_public_access_block.data]
}

data "aws_caller_identity" "current" {}

# ObjectCreated under the incoming prefix -> the queue the S3 bridge reads (deployments/s3_bridge.py).
resource "aws_s3_bucket_notification" "data" {
  bucket = aws_s3_bucket.data.id
  queue {
    queue_arn     = aws_sqs_queue.batches.arn
    events        = ["s3:ObjectCreated:*"]
    filter_prefix = var.incoming_prefix
    filter_suffix = var.incoming_suffix
  }
  # S3 checks it may send to the queue when the notification is created.
  depends_on = [aws_sqs_queue_policy.batches]
}
