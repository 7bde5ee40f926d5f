// The seamless_v2_observability bundle: what scripts/package_monitoring_bundle.py ships
// as a Helm chart and a Terraform module (dashboards, alerting and recording rules).
local mixin = import 'mixin.libsonnet';

{
  name: 'seamless_v2_observability',
  version: '0.1.0',
  description: 'QMTL Grafana dashboards, Prometheus alerting and recording rules',
  dashboards: mixin.grafanaDashboards,
  alertingRules: mixin.prometheusAlerts,
  recordingRules: mixin.prometheusRules,
}
