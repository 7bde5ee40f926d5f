module "content" {
  source = "./modules/content"

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

resource "kubernetes_config_map_v1" "dashboards" {
  for_each = module.content.config_maps

  metadata {
    name      = each.value.name
    namespace = each.value.namespace
    labels    = each.value.labels
  }

  data = each.value.data
}

resource "kubernetes_manifest" "prometheus_rule" {
  count = module.content.prometheus_rule == null ? 0 : 1

  manifest = module.content.prometheus_rule
}
