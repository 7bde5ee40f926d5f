# Provider-free: computes every object the root module creates, so it can be
# evaluated (and compared with the Helm chart) without a Kubernetes cluster.
locals {
  dashboard_dir = "${path.module}/../../dashboards"
  bundled       = { for f in fileset(local.dashboard_dir, "*.json") : f => file("${local.dashboard_dir}/${f}") }
  # Either shape of extra_dashboards: a map file name => JSON, or the Helm list shape.
  extra = can(tomap(var.extra_dashboards)) ? tomap(var.extra_dashboards) : {
    for d in var.extra_dashboards : (try(d.name, null) != null ? d.name : "${d.uid}.json") => d.json
  }
  dashboards = merge(local.bundled, local.extra)

  config_maps = {
    for f, json in local.dashboards : f => {
      name      = "${var.name_prefix}-${replace(lower(trimsuffix(f, ".json")), "/[^a-z0-9-]/", "-")}"
      namespace = var.namespace
      labels    = merge(var.labels, { (var.dashboard_label_key) = var.dashboard_label_value })
      data      = { (f) = json }
    }
  }

  rules = jsondecode(file("${path.module}/../../rules.json"))

  prometheus_rule = {
    apiVersion = "monitoring.coreos.com/v1"
    kind       = "PrometheusRule"
    metadata = {
      name      = "${var.name_prefix}-recording-rules"
      namespace = coalesce(var.prometheus_rule_namespace, var.namespace)
      labels    = merge(var.labels, var.prometheus_rule_labels)
    }
    spec = {
      groups = local.rules.groups
    }
  }
}

output "config_maps" {
  value = local.config_maps
}

output "prometheus_rule" {
  value = local.prometheus_rule
}
