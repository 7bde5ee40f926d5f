// SLOs: recording rules and burn-rate alerts rendered from the SLO objects of
// config.libsonnet (see lib/slo.libsonnet for the method; the error-budget dashboard is
// dashboards/slo.libsonnet).
local alert = import 'lib/alert.libsonnet';
local slo = import 'lib/slo.libsonnet';

{
  local c = $._config,
  local names = std.objectFields(c.slos),
  // An SLO may bring its own `windows` ({page: [...], ticket: [...]}); else the policy.
  local policy(s) = std.get(s, 'windows', c.sloPolicy),

  prometheusRules+:: {
    groups+: [{
      name: 'qmtl-slo-%s' % name,
      rules: slo.rules(name, c.slos[name], policy(c.slos[name])),
    } for name in names],
  },

  prometheusAlerts+:: {
    groups+: [{
      name: 'qmtl-slo',
      rules: std.flattenArrays([
        local s = c.slos[name];
        assert slo.check(name, s, policy(s));
        local budget = '%g' % ((1 - s.objective) * 100);
        [
          alert.withFor(
            c,
            s.alert,
            slo.condition(name, s, policy(s).page, c.sloMinEvents.page),
            'critical',
            '%s is burning its error budget fast.' % s.title,
            '{{ $labels.job }}: %s error ratio is {{ $value | humanizePercentage }}, over %s times the %s%% budget (windows %s); at this rate the %d-day budget is gone within %g days.' % [
              s.title,
              std.join('x / ', ['%g' % p.factor for p in policy(s).page]) + 'x',
              budget,
              std.join(', ', ['%s & %s' % [p.long, p.short] for p in policy(s).page]),
              c.sloBudgetDays,
              c.sloBudgetDays / std.foldl(std.min, [p.factor for p in policy(s).page], 1e9),
            ],
            s.area,
            c.sloFor.page,
          ) + { labels+: { slo: name } },
          alert.withFor(
            c,
            s.alert,
            slo.condition(name, s, policy(s).ticket, c.sloMinEvents.ticket),
            'warning',
            '%s is burning its error budget.' % s.title,
            '{{ $labels.job }}: %s error ratio is {{ $value | humanizePercentage }}, over %s times the %s%% budget (windows %s).' % [
              s.title,
              std.join('x / ', ['%g' % p.factor for p in policy(s).ticket]) + 'x',
              budget,
              std.join(', ', ['%s & %s' % [p.long, p.short] for p in policy(s).ticket]),
            ],
            s.area,
            c.sloFor.ticket,
          ) + { labels+: { slo: name } },
        ]
        for name in names
      ]),
    }],
  },
}
