// Alerts about the monitoring itself: the dead-man's switch, QMTL gone from Prometheus,
// series budgets, and Prometheus' own health (rules failing, Alertmanager unreachable).
local alert = import '../lib/alert.libsonnet';

{
  prometheusAlerts+:: {
    local c = $._config,
    local a(name, expr, severity, summary, description) =
      alert.new(c, name, expr, severity, summary, description, 'meta'),
    groups+: [{
      name: 'qmtl-meta',
      rules: [
        // Always firing: the dead-man's switch.  Route it to a receiver that raises the
        // alarm when the notifications *stop* (the sample Alertmanager config does).
        a('Watchdog',
          'vector(1)',
          'none',
          'The alerting pipeline works (always firing).',
          'This alert fires at all times; if its notifications stop arriving, Prometheus, its rules or Alertmanager are broken. Value {{ $value }}.'),
        a('MetricLabelValuesDropped',
          alert.newOrIncreased(c, 'qmtl_dropped_label_values_total{%(qmtlSelector)s}' % c, c.eventWindow),
          'warning',
          'A metric reached its series budget; new label values are merged.',
          '{{ $labels.job }} at {{ $labels.instance }} counted new values of {{ $labels.metric }} as __other__ within the last %(eventWindow)s (telemetry.max_series_per_metric): dashboards and alerts lose those worlds or contexts.' % c),
      ] + [
        // No target of the job at all (`up == 0` needs the target to exist): QMTL went
        // silent -- scaled to zero, deleted, or dropped by service discovery.
        a('QmtlJobAbsent',
          'absent(up{%s})' % c.absentJobs[name],
          'critical',
          'A QMTL service has no target in Prometheus.',
          'Prometheus has had no %s target (%s) for %s: the service is gone or no longer discovered, so none of its alerts can fire. Value {{ $value }}.' % [name, std.strReplace(c.absentJobs[name], '"', "'"), c['for'].QmtlJobAbsent])
        + { labels+: { service: name } }
        for name in std.objectFields(c.absentJobs)
      ] + (
        if c.prometheusSelfAlerts then [
          a('PrometheusRuleEvaluationFailures',
            'increase(prometheus_rule_evaluation_failures_total{%s}[%s]) > 0' % [c.prometheusSelector, c.rateWindow],
            'critical',
            'Prometheus fails to evaluate rules.',
            '{{ $labels.instance }} failed {{ $value | humanize }} evaluations of rule group {{ $labels.rule_group }} in the last %(rateWindow)s: alerts of that group may never fire.' % c),
          // Prometheus counts one error per failed request (a batch of alerts), not per
          // alert: a hung Alertmanager times out a batch every 10 s; one that is down
          // refuses every send.  A single failed request is not enough to page.
          // Watchdog's notifications, resent every minute, keep a dead Alertmanager from
          // going unnoticed even on a quiet system.
          a('AlertmanagerUnreachable',
            |||
              sum by (job, instance, alertmanager) (increase(prometheus_notifications_errors_total{%(prom)s}[%(alertmanagerErrorWindow)s])) >= %(alertmanagerMinErrors)s
            ||| % (c { prom: c.prometheusSelector }),
            'critical',
            'Prometheus cannot deliver alerts to an Alertmanager.',
            '{{ $labels.instance }} failed {{ $value | humanize }} requests to {{ $labels.alertmanager }} in the last %(alertmanagerErrorWindow)s: alerts are not reaching anyone through it (prometheus_notifications_dropped_total counts what was lost).' % c),
        ] else []
      ),
    }],
  },
}
