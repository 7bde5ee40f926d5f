# Copy to terraform.tfvars in a root module that declares these variables (root/ does:
# cd root && cp ../terraform.tfvars.example terraform.tfvars). Every variable is optional.
namespace   = "qmtl-monitoring"
name_prefix = "seamless-observability"

labels = {
  team = "qmtl"
}

enable_dashboards      = true
enable_prometheus_rule = true
enable_alerts          = true
enable_recording_rules = true

prometheus_rule_namespace = "monitoring"

prometheus_rule_labels = {
  release = "kube-prometheus-stack"
}

# Added to the bundled dashboards (one named like a bundled dashboard replaces it): a map
# of file name => dashboard JSON, or a list in the Helm chart's shape, e.g.
# [{ uid = "trading-desk", title = "Trading desk", json = "..." }] (file name
# "<uid>.json" when name is absent). json is the dashboard JSON as a string.
extra_dashboards = {}
