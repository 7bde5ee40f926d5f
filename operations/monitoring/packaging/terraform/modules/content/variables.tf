variable "name_prefix" {
  type = string
}

variable "namespace" {
  type = string
}

variable "labels" {
  type    = map(string)
  default = {}
}

variable "dashboard_label_key" {
  type    = string
  default = "grafana_dashboard"
}

variable "dashboard_label_value" {
  type    = string
  default = "1"
}

variable "extra_dashboards" {
  type    = any
  default = {}
}

variable "prometheus_rule_namespace" {
  type    = string
  default = null
}

variable "prometheus_rule_labels" {
  type    = map(string)
  default = {}
}
