# A root module for the packaged steps: it declares every variable of the module
# (variables.tf is a copy of the module's), so each value in terraform.tfvars reaches it.
# A root that only says `module "seamless_monitoring" { source = ... }` declares none, and
# Terraform ignores terraform.tfvars with "Value for undeclared variable" warnings.
#
#   cd operations/monitoring/dist/terraform/seamless_v2_observability/root
#   cp ../terraform.tfvars.example terraform.tfvars
#   terraform init
#   terraform apply
#
# The kubernetes provider reads the cluster from KUBE_CONFIG_PATH (or add a provider
# block here). To keep the workspace elsewhere, copy this directory and set `source` to
# the module's path from there.
module "seamless_monitoring" {
  source = "../"

  name_prefix               = var.name_prefix
  namespace                 = var.namespace
  labels                    = var.labels
  enable_dashboards         = var.enable_dashboards
  dashboard_label_key       = var.dashboard_label_key
  dashboard_label_value     = var.dashboard_label_value
  extra_dashboards          = var.extra_dashboards
  enable_prometheus_rule    = var.enable_prometheus_rule
  enable_alerts             = var.enable_alerts
  enable_recording_rules    = var.enable_recording_rules
  prometheus_rule_namespace = var.prometheus_rule_namespace
  prometheus_rule_labels    = var.prometheus_rule_labels
}
