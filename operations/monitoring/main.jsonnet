// Renders everything; `overrides` (a top-level argument) patches _config, which is how
// the end-to-end suite gets short windows from the very same source.
function(overrides={})
  local base = import 'mixin.libsonnet';
  local mixin = base { _config:: std.mergePatch(base._config, overrides) };
  {
    alerts: mixin.prometheusAlerts,
    rules: mixin.prometheusRules,
    dashboards: mixin.grafanaDashboards,
    slos: mixin._config.slos,
  }
