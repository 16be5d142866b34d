# The online endpoint as an AWS Lambda function behind an HTTP API: scales to zero when idle, one model
# load per warm container. The image is serving/lambda/Dockerfile, pushed to ECR by you
# (var.serving_image_uri). Uses the data bucket of s3.tf (aws_s3_bucket.data) and var.incoming_prefix of
# variables.tf. Parse-checked by tests/test_serving_lambda.py; nothing is applied by the tests.
#
# Rights, each scoped to a prefix of the bucket:
# - write the prediction log: the drift sample under <incoming>/<model>/_predictions/sample/ (drift-monitor
#   reads it there), the inspection stream and remainders under var.prediction_log_prefix;
# - write its live per-version summaries under var.serving_live_prefix (promote's live gate reads them);
# - its own log group; X-Ray traces and (in a VPC) its network interfaces by AWS's managed policies.
#   Models are read through MLflow's server (var.mlflow_tracking_uri), not from S3.

variable "serving_image_uri" {
  description = "ECR image of serving/lambda/Dockerfile, e.g. <account>.dkr.ecr.<region>.amazonaws.com/leanops-serving:<tag>."
  type        = string
}

variable "mlflow_tracking_uri" {
  description = "MLflow server the function loads champions from (MLFLOW_TRACKING_URI); reachable from the function's subnets."
  type        = string
}

variable "serving_memory_mb" {
  description = "Memory of the function (Lambda gives CPU in proportion: 1,769 MB is one full vCPU)."
  type        = number
  default     = 2048
}

variable "serving_timeout_seconds" {
  description = "Longest request; the first request of a cold container also loads the models."
  type        = number
  default     = 60
}

variable "serving_reserved_concurrency" {
  description = "Most containers at once: bounds the cost and the load on MLflow when traffic spikes."
  type        = number
  default     = 20
}

variable "serving_provisioned_concurrency" {
  description = "Containers kept warm (no cold start for them; billed while idle). 0: scale to zero."
  type        = number
  default     = 0
}

variable "serving_authorization_type" {
  description = "HTTP API route authorization: AWS_IAM (callers sign requests with SigV4) or NONE (public: add throttling and a WAF)."
  type        = string
  default     = "AWS_IAM"
}

variable "serving_subnet_ids" {
  description = "Subnets of the function (to reach a private MLflow server); empty: no VPC."
  type        = list(string)
  default     = []
}

variable "serving_security_group_ids" {
  description = "Security groups of the function when it runs in var.serving_subnet_ids."
  type        = list(string)
  default     = []
}

variable "prediction_log_prefix" {
  description = "Inspection stream and remainders of the prediction log (LEANOPS_PREDICTION_LOG_ROOT under the bucket)."
  type        = string
  default     = "predictions/"
}

variable "serving_live_prefix" {
  description = "Live per-version summaries of the endpoints (LEANOPS_SERVING_LIVE_ROOT under the bucket)."
  type        = string
  default     = "serving/live/"
}

variable "serving_log_retention_days" {
  description = "Days the function's CloudWatch logs are kept."
  type        = number
  default     = 30
}

locals {
  serving_function_name = "leanops-serving"
}

resource "aws_cloudwatch_log_group" "serving" {
  #checkov:skip=CKV_AWS_158:the logs carry request metadata, not rows; encrypted at rest by CloudWatch's own key
  #checkov:skip=CKV_AWS_338:retention is a variable (default 30 days): the prediction log, not CloudWatch, keeps predictions
  name              = "/aws/lambda/${local.serving_function_name}"
  retention_in_days = var.serving_log_retention_days
}

data "aws_iam_policy_document" "serving_trust" {
  statement {
    effect  = "Allow"
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "serving" {
  statement {
    sid       = "WritePredictionLog"
    effect    = "Allow"
    actions   = ["s3:PutObject"]
    resources = [
      "${aws_s3_bucket.data.arn}/${var.incoming_prefix}*/_predictions/sample/*",
      "${aws_s3_bucket.data.arn}/${var.prediction_log_prefix}*",
    ]
  }
  statement {
    sid       = "WriteLiveSummaries"
    effect    = "Allow"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.data.arn}/${var.serving_live_prefix}*"]
  }
  statement {
    sid       = "OwnLogs"
    effect    = "Allow"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.serving.arn}:*"]
  }
}

resource "aws_iam_role" "serving" {
  name               = "${local.serving_function_name}-lambda"
  assume_role_policy = data.aws_iam_policy_document.serving_trust.json
}

resource "aws_iam_role_policy" "serving" {
  name   = "serving"
  role   = aws_iam_role.serving.id
  policy = data.aws_iam_policy_document.serving.json
}

# X-Ray's two write actions and Lambda's network-interface actions cannot be scoped to a resource:
# AWS's managed policies for exactly these, rather than a "*" of our own.
resource "aws_iam_role_policy_attachment" "serving_tracing" {
  role       = aws_iam_role.serving.name
  policy_arn = "arn:aws:iam::aws:policy/AWSXRayDaemonWriteAccess"
}

resource "aws_iam_role_policy_attachment" "serving_network" {
  count      = length(var.serving_subnet_ids) > 0 ? 1 : 0
  role       = aws_iam_role.serving.name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"
}

# The workers' share (aws_iam_role.worker of iam.tf): promote's live gate reads the summaries,
# drift-monitor joins labels to the sample and its remainders, `leanops predictions prune` deletes.
data "aws_iam_policy_document" "worker_serving" {
  statement {
    sid     = "ReadServingRecords"
    effect  = "Allow"
    actions = ["s3:GetObject"]
    resources = [
      "${aws_s3_bucket.data.arn}/${var.prediction_log_prefix}*",
      "${aws_s3_bucket.data.arn}/${var.serving_live_prefix}*",
    ]
  }
  statement {
    sid     = "PruneServingRecords"
    effect  = "Allow"
    actions = ["s3:DeleteObject"]
    resources = [
      "${aws_s3_bucket.data.arn}/${var.incoming_prefix}*/_predictions/*",
      "${aws_s3_bucket.data.arn}/${var.prediction_log_prefix}*",
      "${aws_s3_bucket.data.arn}/${var.serving_live_prefix}*",
    ]
  }
  statement {
    sid       = "ListServingRecords"
    effect    = "Allow"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.data.arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${var.prediction_log_prefix}*", "${var.serving_live_prefix}*"]
    }
  }
}

resource "aws_iam_role_policy" "worker_serving" {
  name   = "serving-records"
  role   = aws_iam_role.worker.id
  policy = data.aws_iam_policy_document.worker_serving.json
}

resource "aws_lambda_function" "serving" {
  #checkov:skip=CKV_AWS_116:invoked synchronously by the HTTP API: the caller gets the error, there is no event to dead-letter
  #checkov:skip=CKV_AWS_272:code signing does not apply to container images (the ECR image digest pins the code)
  #checkov:skip=CKV_AWS_117:a VPC is optional (var.serving_subnet_ids), needed only for a private MLflow server
  #checkov:skip=CKV_AWS_173:the environment holds no secret (bucket name, MLflow URL); encrypted by Lambda's own key
  function_name                  = local.serving_function_name
  role                           = aws_iam_role.serving.arn
  package_type                   = "Image"
  image_uri                      = var.serving_image_uri
  architectures                  = ["x86_64"]
  memory_size                    = var.serving_memory_mb
  timeout                        = var.serving_timeout_seconds
  reserved_concurrent_executions = var.serving_reserved_concurrency
  publish                        = var.serving_provisioned_concurrency > 0

  environment {
    variables = {
      LEANOPS_S3_BUCKET             = aws_s3_bucket.data.bucket
      LEANOPS_AWS_REGION            = var.region
      LEANOPS_S3_INCOMING_PREFIX    = var.incoming_prefix
      LEANOPS_PREDICTION_LOG_ROOT   = "s3://${aws_s3_bucket.data.bucket}/${trimsuffix(var.prediction_log_prefix, "/")}"
      LEANOPS_SERVING_LIVE_ROOT     = "s3://${aws_s3_bucket.data.bucket}/${trimsuffix(var.serving_live_prefix, "/")}"
      LEANOPS_S3_USE_LOCAL_ENDPOINT = "false"
      LEANOPS_SERVING_FOLLOW_EVENTS = "false"
      MLFLOW_TRACKING_URI           = var.mlflow_tracking_uri
    }
  }

  dynamic "vpc_config" {
    for_each = length(var.serving_subnet_ids) > 0 ? [1] : []
    content {
      subnet_ids         = var.serving_subnet_ids
      security_group_ids = var.serving_security_group_ids
    }
  }

  tracing_config {
    mode = "Active"
  }

  depends_on = [aws_cloudwatch_log_group.serving, aws_iam_role_policy.serving]
}

resource "aws_lambda_provisioned_concurrency_config" "serving" {
  count                             = var.serving_provisioned_concurrency > 0 ? 1 : 0
  function_name                     = aws_lambda_function.serving.function_name
  qualifier                         = aws_lambda_function.serving.version
  provisioned_concurrent_executions = var.serving_provisioned_concurrency
}

resource "aws_apigatewayv2_api" "serving" {
  name          = local.serving_function_name
  protocol_type = "HTTP"
  description   = "leanops online endpoint: POST /models/{name}/predict, GET /health, /ready, /metrics"
}

resource "aws_apigatewayv2_integration" "serving" {
  api_id                 = aws_apigatewayv2_api.serving.id
  integration_type       = "AWS_PROXY"
  integration_uri        = aws_lambda_function.serving.invoke_arn
  payload_format_version = "2.0"
  timeout_milliseconds   = 30000
}

resource "aws_apigatewayv2_route" "serving" {
  api_id             = aws_apigatewayv2_api.serving.id
  route_key          = "$default"
  target             = "integrations/${aws_apigatewayv2_integration.serving.id}"
  authorization_type = var.serving_authorization_type
}

resource "aws_cloudwatch_log_group" "serving_api" {
  #checkov:skip=CKV_AWS_158:access logs hold request metadata only; encrypted at rest by CloudWatch's own key
  #checkov:skip=CKV_AWS_338:retention is a variable (default 30 days)
  name              = "/aws/apigateway/${local.serving_function_name}"
  retention_in_days = var.serving_log_retention_days
}

resource "aws_apigatewayv2_stage" "serving" {
  api_id      = aws_apigatewayv2_api.serving.id
  name        = "$default"
  auto_deploy = true

  default_route_settings {
    throttling_burst_limit = 200
    throttling_rate_limit  = 100
  }

  access_log_settings {
    destination_arn = aws_cloudwatch_log_group.serving_api.arn
    format = jsonencode({
      requestId = "$context.requestId", routeKey = "$context.routeKey", status = "$context.status",
      latencyMs = "$context.responseLatency", integrationError = "$context.integrationErrorMessage"
    })
  }
}

resource "aws_lambda_permission" "serving_api" {
  statement_id  = "AllowHttpApiInvoke"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.serving.function_name
  principal     = "apigateway.amazonaws.com"
  source_arn    = "${aws_apigatewayv2_api.serving.execution_arn}/*/*"
}

output "serving_url" {
  description = "Base URL of the endpoint on Lambda (POST <url>/models/<name>/predict)."
  value       = aws_apigatewayv2_stage.serving.invoke_url
}

output "serving_role_arn" {
  value = aws_iam_role.serving.arn
}
