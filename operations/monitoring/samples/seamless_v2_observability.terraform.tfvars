# Copy to terraform.tfvars and adjust. Every variable is optional.
namespace   = "qmtl-monitoring"
name_prefix = "seamless-observability"

labels = {
  team = "qmtl"
}

enable_dashboards      = true
enable_prometheus_rule = true

prometheus_rule_namespace = "monitoring"

prometheus_rule_labels = {
  release = "kube-prometheus-stack"
}

# Added to the bundled dashboards: file name => dashboard JSON.
extra_dashboards = {}
