# The checks of every input live here: the root module and the packaged module pass
# their variables through unchanged, so Terraform reports a bad value once, by name.

variable "name_prefix" {
  type = string

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", var.name_prefix)) && length(var.name_prefix) <= 40
    error_message = "name_prefix must be lower-case letters, digits and '-', start and end alphanumeric, at most 40 characters."
  }
}

variable "namespace" {
  type = string
}

variable "labels" {
  type    = map(string)
  default = {}
}

variable "enable_dashboards" {
  type    = bool
  default = true
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

  validation {
    condition = can(tomap(var.extra_dashboards)) || try(alltrue([
      for d in var.extra_dashboards : can(d.json) && (try(d.name, null) != null || try(d.uid, null) != null)
    ]), false)
    error_message = "extra_dashboards: give a map of file name => dashboard JSON, or a list of entries with `name` (file name) or `uid`, and `json`."
  }

  validation {
    condition = (can(tomap(var.extra_dashboards))
      ? alltrue([for f, json in var.extra_dashboards : can(keys(jsondecode(json)))])
    : try(alltrue([for d in var.extra_dashboards : can(keys(jsondecode(d.json)))]), true))
    error_message = "extra_dashboards: each dashboard's json must be the dashboard's JSON object as a string (jsonencode({...}) or a heredoc), not an HCL object."
  }

  validation {
    condition = (can(tomap(var.extra_dashboards))
      ? length(distinct([for f, json in var.extra_dashboards : replace(lower(trimsuffix(f, ".json")), "/[^a-z0-9-]/", "-")])) == length(var.extra_dashboards)
      : try(length(distinct([
        for d in var.extra_dashboards : replace(lower(trimsuffix(try(d.name, null) != null ? d.name : "${d.uid}.json", ".json")), "/[^a-z0-9-]/", "-")
    ])) == length(var.extra_dashboards), true))
    error_message = "extra_dashboards: two entries make the same ConfigMap name (names are compared lower-cased, other characters as '-'); give each dashboard its own name."
  }
}

variable "enable_prometheus_rule" {
  type    = bool
  default = true
}

variable "enable_alerts" {
  type    = bool
  default = true
}

variable "enable_recording_rules" {
  type    = bool
  default = true
}

variable "prometheus_rule_namespace" {
  type    = string
  default = null
}

variable "prometheus_rule_labels" {
  type    = map(string)
  default = {}
}
