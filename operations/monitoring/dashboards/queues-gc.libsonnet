local g = import '../lib/grafana.libsonnet';

{
  grafanaDashboards+:: {
    local c = $._config,
    local f = g.filter(c),
    'qmtl-queues-gc.json': g.dashboard(c, 'qmtl-queues-gc', 'QMTL / Queues & GC', c.dagmanagerSelector, [
      g.timeseries('Orphan queues',
                   [['orphan_queue_total{%s}' % f, '{{instance}}']],
                   'short',
                   'Queues no node emits, counted at the last GC run (orphan_queue_total).'),
      g.timeseries('Seconds since last GC run',
                   [['time() - gc_last_run_timestamp{%s}' % f, '{{instance}}']],
                   's',
                   'GCSchedulerStall fires above %(gcStallSeconds)s s.' % c),
      g.timeseries('Queue lag (s) vs threshold', [
        ['queue_lag_seconds{%s}' % f, 'lag {{topic}}'],
        ['queue_lag_threshold_seconds{%s}' % f, 'threshold {{topic}}'],
      ], 's'),
      g.timeseries('Queue lag (messages)', [['queue_lag_messages{%s}' % f, '{{topic}}']]),
      g.timeseries('Queue creation errors', [['increase(queue_create_error_total{%s}[$__rate_interval])' % f, '{{instance}}']]),
      g.timeseries('Kafka admin breaker', [
        ['kafka_breaker_state{%s}' % f, 'open (1) / closed (0) {{instance}}'],
        ['kafka_breaker_open_total{%s}' % f, 'times opened {{instance}}'],
      ]),
    ]),
  },
}
