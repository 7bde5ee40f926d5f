// One constructor for every alert so wording and annotations stay uniform.
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
}
