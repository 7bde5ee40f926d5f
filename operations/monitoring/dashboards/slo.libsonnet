// The error-budget dashboard of the SLOs in config.libsonnet (rules and alerts: slos.libsonnet).
local g = import '../lib/grafana.libsonnet';
local slo = import '../lib/slo.libsonnet';

{
  local c = $._config,
  local names = std.objectFields(c.slos),
  local policy(s) = std.get(s, 'windows', c.sloPolicy),

  grafanaDashboards+:: {
    local days = '%dd' % c.sloBudgetDays,
    'qmtl-slo.json': g.dashboard(c, 'qmtl-slo', 'QMTL / SLOs and error budgets', c.qmtlSelector, std.flattenArrays([
      local s = c.slos[name];
      assert slo.check(name, s, policy(s));
      local budget = 1 - s.objective;
      [
        g.stat('%s: error budget left (%s)' % [s.title, days], [[
          '1 - ((%s) / (%s)) / %g' % [s.errorQuery % { window: days }, s.totalQuery % { window: days }, budget],
          '{{job}}',
        ]], 'percentunit', '%s; objective %g%%. 100%% is an untouched budget, 0%% spent.' % [s.description, s.objective * 100]),
        g.timeseries('%s: burn rate per window' % s.title, [
          ['slo:sli_error:ratio_rate%s{slo="%s"} / %g' % [w, name, budget], '%s {{job}}' % w]
          for w in slo.windows(policy(s))
        ], 'short', 'Error ratio divided by the budget ratio: 1 spends the budget exactly in %s; pages at 14.4 (1h) and 6 (6h).' % days),
      ]
      for name in names
    ])),
  },
}
