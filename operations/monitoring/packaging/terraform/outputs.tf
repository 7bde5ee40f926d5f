output "dashboard_config_maps" {
  description = "Names of the dashboard ConfigMaps."
  value       = [for cm in kubernetes_config_map_v1.dashboards : cm.metadata[0].name]
}

output "prometheus_rule_name" {
  description = "Name of the PrometheusRule, or null when disabled."
  value       = var.enable_prometheus_rule ? module.content.prometheus_rule.metadata.name : null
}
