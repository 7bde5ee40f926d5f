variable "namespace" {
  description = "Namespace of the dashboard ConfigMaps (and of the PrometheusRule unless prometheus_rule_namespace is set)."
  type        = string
  default     = "monitoring"
}

variable "name_prefix" {
  description = "Prefix of every resource name; must be a DNS-1123 label. Matches the Helm release name."
  type        = string
  default     = "seamless-observability"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", var.name_prefix)) && length(var.name_prefix) <= 40
    error_message = "name_prefix must be lower-case letters, digits and '-', start and end alphanumeric, at most 40 characters."
  }
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
  description = "Additional dashboards, added to the bundled ones: a map of file name => dashboard JSON, or a list of {name or uid, title, json} entries as the Helm chart's grafanaDashboards.extraDashboards (file name \"<uid>.json\" when name is absent)."
  type        = any
  default     = {}

  validation {
    condition = can(tomap(var.extra_dashboards)) || alltrue([
      for d in var.extra_dashboards : can(d.json) && (can(d.name) || can(d.uid))
    ])
    error_message = "extra_dashboards: give a map of file name => dashboard JSON, or a list of {name or uid, json} entries."
  }
}

variable "enable_prometheus_rule" {
  description = "Create the PrometheusRule with the recording rules (needs the Prometheus Operator CRDs)."
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
