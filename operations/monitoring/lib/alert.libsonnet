// One constructor for every alert so wording and annotations stay uniform.
{
  new(config, name, expr, severity, summary, description, area):: {
    alert: name,
    expr: std.stripChars(expr, '\n '),
    'for': config['for'][name],
    labels: { severity: severity, area: area },
    annotations: {
      summary: summary,
      description: description,
      runbook_url: config.runbookBaseUrl + '#' + std.asciiLower(name),
    },
  },
}
