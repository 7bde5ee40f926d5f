output "dashboard_config_maps" {
  description = "Names of the dashboard ConfigMaps."
  value       = [for cm in kubernetes_config_map_v1.dashboards : cm.metadata[0].name]
}

output "prometheus_rule_name" {
  description = "Name of the PrometheusRule, or null when there is none."
  value       = module.content.prometheus_rule == null ? null : module.content.prometheus_rule.metadata.name
}
