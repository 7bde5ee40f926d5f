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

# Added to the bundled dashboards: a map of file name => dashboard JSON, or a list in the
# Helm chart's shape, e.g. [{ uid = "trading-desk", title = "Trading desk", json = "..." }]
# (file name "<uid>.json" when name is absent).
extra_dashboards = {}
