# The batch queue and its dead-letter queue. SQS moves a message that failed max_receive_count
# receives to the dead-letter queue by itself; the bridge also sends unreadable messages there.
# SSE-SQS encryption: S3 can deliver to it without a KMS key policy.
resource "aws_sqs_queue" "batches_dead" {
  name                      = var.dead_letter_queue_name
  message_retention_seconds = 1209600 # 14 days, the maximum: time to look at what failed
  sqs_managed_sse_enabled   = true
}

resource "aws_sqs_queue" "batches" {
  name                       = var.queue_name
  visibility_timeout_seconds = var.visibility_timeout_seconds
  message_retention_seconds  = 345600 # 4 days
  receive_wait_time_seconds  = 10     # long polling, as the bridge does (LEANOPS_SQS_WAIT_SECONDS)
  sqs_managed_sse_enabled    = true
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.batches_dead.arn
    maxReceiveCount     = var.max_receive_count
  })
}

# Only the dead-letter queue's own source may redrive into it.
resource "aws_sqs_queue_redrive_allow_policy" "batches_dead" {
  queue_url = aws_sqs_queue.batches_dead.id
  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.batches.arn]
  })
}

# The bucket, and only the bucket of this account, may send its notifications to the queue.
data "aws_iam_policy_document" "batches_queue" {
  statement {
    sid       = "BucketNotifications"
    effect    = "Allow"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.batches.arn]
    principals {
      type        = "Service"
      identifiers = ["s3.amazonaws.com"]
    }
    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [aws_s3_bucket.data.arn]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

resource "aws_sqs_queue_policy" "batches" {
  queue_url = aws_sqs_queue.batches.id
  policy    = data.aws_iam_policy_document.batches_queue.json
}
