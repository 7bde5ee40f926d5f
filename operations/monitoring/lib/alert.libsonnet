// One constructor for every alert so wording and annotations stay uniform, and the
// expression shapes several alerts share.
local slo = import 'slo.libsonnet';

{
  new(config, name, expr, severity, summary, description, area)::
    $.withFor(config, name, expr, severity, summary, description, area, config['for'][name]),

  withFor(config, name, expr, severity, summary, description, area, duration):: {
    alert: name,
    expr: std.stripChars(expr, '\n '),
    'for': duration,
    labels: { severity: severity, area: area },
    annotations: {
      summary: summary,
      description: description,
      runbook_url: config.runbookBaseUrl + '#' + std.asciiLower(name),
    },
  },

  // A counter that moved within `window` -- including a series first seen already above
  // zero (a node that failed before its first scrape, a process that started and failed
  // at once): increase() needs two samples of a series and never sees those.  Just after
  // Prometheus itself started, every series looks new; that moment is left out.
  newOrIncreased(config, metric, window)::
    |||
      (
        (%(m)s > 0 unless %(m)s offset %(w)s)
        unless on () (time() - max(process_start_time_seconds{%(prom)s}) < %(s)d)
      )
      or
      increase(%(m)s[%(w)s]) > 0
    ||| % { m: metric, w: window, prom: config.prometheusSelector, s: slo.seconds(window) },
}
