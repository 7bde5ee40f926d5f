local g = import '../lib/grafana.libsonnet';

{
  grafanaDashboards+:: {
    local c = $._config,
    local f = g.filter(c),
    'qmtl-backfill.json': g.dashboard(c, 'qmtl-backfill', 'QMTL / Backfill', c.sdkSelector, [
      g.stat('Backfill jobs in progress', [['sum(backfill_jobs_in_progress{%s})' % f, 'jobs']]),
      g.timeseries('Latest backfilled timestamp', [['backfill_last_timestamp{%s} * 1000' % f, '{{node_id}} / {{interval}}']], 'dateTimeAsIso'),
      g.timeseries('Backfill retries', [['sum by (node_id) (increase(backfill_retry_total{%s}[$__rate_interval]))' % f, '{{node_id}}']]),
      g.timeseries('Backfill failures',
                   [['sum by (node_id) (increase(backfill_failure_total{%s}[$__rate_interval]))' % f, '{{node_id}}']],
                   'short',
                   'Jobs that gave up after their retries (BackfillFailures).'),
    ]),
  },
}
