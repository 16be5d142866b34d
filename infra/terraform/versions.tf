# AWS resources of a leanops production: the data bucket, its notification queue with a dead-letter
# queue, and least-privilege roles for the workers, the S3 bridge and the MLflow server.
# Parse-checked by tests/test_infra_terraform.py (python-hcl2) and scanned by checkov (make checkov);
# nothing here is applied by the tests: run `terraform init && terraform plan` in your account.
terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.40, < 7"
    }
  }
}

provider "aws" {
  region = var.region
  default_tags {
    tags = {
      project    = "leanops"
      managed-by = "terraform"
    }
  }
}
