output "dashboard_config_maps" {
  description = "Names of the dashboard ConfigMaps."
  value       = module.seamless_monitoring.dashboard_config_maps
}

output "prometheus_rule_name" {
  description = "Name of the PrometheusRule, or null when there is none."
  value       = module.seamless_monitoring.prometheus_rule_name
}
