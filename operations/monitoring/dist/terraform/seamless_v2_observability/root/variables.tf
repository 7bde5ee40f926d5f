variable "namespace" {
  description = "Namespace of the dashboard ConfigMaps (and of the PrometheusRule unless prometheus_rule_namespace is set)."
  type        = string
  default     = "monitoring"
}

variable "name_prefix" {
  description = "Prefix of every resource name; must be a DNS-1123 label of at most 40 characters. Matches the Helm release name."
  type        = string
  default     = "seamless-observability"
}

variable "labels" {
  description = "Labels added to every resource."
  type        = map(string)
  default     = {}
}

variable "enable_dashboards" {
  description = "Create the Grafana dashboard ConfigMaps."
  type        = bool
  default     = true
}

variable "dashboard_label_key" {
  description = "Label the Grafana sidecar watches."
  type        = string
  default     = "grafana_dashboard"
}

variable "dashboard_label_value" {
  description = "Value of dashboard_label_key."
  type        = string
  default     = "1"
}

variable "extra_dashboards" {
  description = "Additional dashboards, added to the bundled ones: a map of file name => dashboard JSON, or a list of {name or uid, title, json} entries as the Helm chart's grafanaDashboards.extraDashboards (file name \"<uid>.json\" when name is absent). One named like a bundled dashboard replaces it. Checked in modules/content."
  type        = any
  default     = {}
}

variable "enable_prometheus_rule" {
  description = "Create the PrometheusRule (needs the Prometheus Operator CRDs)."
  type        = bool
  default     = true
}

variable "enable_alerts" {
  description = "Put the alerting rules in the PrometheusRule."
  type        = bool
  default     = true
}

variable "enable_recording_rules" {
  description = "Put the recording rules in the PrometheusRule."
  type        = bool
  default     = true
}

variable "prometheus_rule_namespace" {
  description = "Namespace of the PrometheusRule; defaults to var.namespace."
  type        = string
  default     = null
}

variable "prometheus_rule_labels" {
  description = "Extra labels on the PrometheusRule (e.g. the rule selector of your Prometheus)."
  type        = map(string)
  default     = {}
}
