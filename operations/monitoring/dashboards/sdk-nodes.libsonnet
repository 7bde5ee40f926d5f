local g = import '../lib/grafana.libsonnet';

{
  grafanaDashboards+:: {
    local c = $._config,
    local w = c.rateWindow,
    local f = g.filter(c),
    'qmtl-sdk-nodes.json': g.dashboard(c, 'qmtl-sdk-nodes', 'QMTL / SDK nodes & cache', c.sdkSelector, [
      g.timeseries('Node executions per second', [['job_instance_node_id:node_processed:rate%s{%s}' % [w, f], '{{node_id}}']], 'ops'),
      g.timeseries('Node failures per second', [['job_instance_node_id:node_process_failures:rate%s{%s}' % [w, f], '{{node_id}}']], 'ops'),
      g.timeseries('Node compute p95 (ms)', [
        ['job_instance_node_id:node_process_duration_ms:p95_rate%s{%s}' % [w, f], '{{node_id}}'],
        ['histogram_quantile(0.95, sum by (le) (rate(node_process_duration_ms_bucket{%s}[$__rate_interval])))' % f, 'all nodes (exemplars with per-node tracing)', g.exemplars],
      ], 'ms'),
      g.timeseries('Cache reads per second', [['sum by (upstream_id, interval) (rate(cache_read_total{%s}[$__rate_interval]))' % f, '{{upstream_id}} / {{interval}}']], 'ops'),
      g.timeseries('Seconds since last cache read', [['time() - cache_last_read_timestamp{%s}' % f, '{{upstream_id}} / {{interval}}']], 's'),
      g.timeseries('Node cache resident bytes', [
        ['job_instance:nodecache_resident_bytes:sum{%s}' % f, 'total {{instance}}'],
        ['nodecache_resident_bytes{%s,scope="node"}' % f, '{{node_id}}'],
      ], 'bytes'),
      g.timeseries('Event recorder errors',
                   [['sum by (recorder) (increase(event_recorder_errors_total{%s}[$__rate_interval]))' % f, '{{recorder}}']],
                   'short',
                   'Rows the recorder failed to persist (EventRecorderErrors).'),
      g.timeseries('Label values merged into __other__',
                   [['sum by (metric) (increase(qmtl_dropped_label_values_total{%s}[$__rate_interval]))' % f, '{{metric}}']],
                   'short',
                   'A metric reached telemetry.max_series_per_metric (MetricLabelValuesDropped).'),
    ]),
  },
}
