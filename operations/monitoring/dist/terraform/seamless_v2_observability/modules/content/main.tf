# Provider-free: computes every object the root module creates, so it can be
# evaluated (and compared with the Helm chart) without a Kubernetes cluster.
locals {
  dashboard_dir = "${path.module}/../../dashboards"
  bundled       = [for f in sort(fileset(local.dashboard_dir, "*.json")) : { file = f, json = file("${local.dashboard_dir}/${f}") }]
  # Either shape of extra_dashboards: a map file name => JSON, or the Helm list shape.
  extra = can(tomap(var.extra_dashboards)) ? [for f, json in tomap(var.extra_dashboards) : { file = f, json = json }] : [
    for d in var.extra_dashboards : { file = try(d.name, null) != null ? d.name : "${d.uid}.json", json = d.json }
  ]
  # A dashboard is known by its ConfigMap name, as in the Helm chart: an extra dashboard
  # named like a bundled one replaces it.
  by_config_map = merge(
    { for d in local.bundled : trimsuffix("${var.name_prefix}-${replace(lower(trimsuffix(d.file, ".json")), "/[^a-z0-9-]/", "-")}", "-") => d },
    { for d in local.extra : trimsuffix("${var.name_prefix}-${replace(lower(trimsuffix(d.file, ".json")), "/[^a-z0-9-]/", "-")}", "-") => d },
  )

  config_maps = var.enable_dashboards ? {
    for name, d in local.by_config_map : name => {
      name      = name
      namespace = var.namespace
      labels    = merge(var.labels, { (var.dashboard_label_key) = var.dashboard_label_value })
      data      = { (d.file) = d.json }
    }
  } : {}

  groups = concat(
    [for g in jsondecode(file("${path.module}/../../alert_rules.json")).groups : g if var.enable_alerts],
    [for g in jsondecode(file("${path.module}/../../recording_rules.json")).groups : g if var.enable_recording_rules],
  )

  prometheus_rule = var.enable_prometheus_rule && length(local.groups) > 0 ? {
    apiVersion = "monitoring.coreos.com/v1"
    kind       = "PrometheusRule"
    metadata = {
      name      = "${var.name_prefix}-rules"
      namespace = coalesce(var.prometheus_rule_namespace, var.namespace)
      labels    = merge(var.labels, var.prometheus_rule_labels)
    }
    spec = {
      groups = local.groups
    }
  } : null
}

output "config_maps" {
  value = local.config_maps
}

output "prometheus_rule" {
  value = local.prometheus_rule
}
