local alert = import '../lib/alert.libsonnet';

{
  prometheusAlerts+:: {
    local c = $._config,
    local a(name, expr, severity, summary, description) =
      alert.new(c, name, expr, severity, summary, description, 'sdk'),
    groups+: [{
      name: 'qmtl-sdk',
      rules: [
        a('NodeCacheMemoryHigh',
          'nodecache_resident_bytes{scope="total"} > %(nodeCacheTotalBytes)s' % c,
          'warning', 'SDK node caches use too much memory.',
          'Node caches on {{ $labels.instance }} hold {{ $value | humanize1024 }}B (threshold %(nodeCacheTotalBytes)s bytes).' % c),
        a('NodeSlowProcessing', |||
          histogram_quantile(0.95, sum by (job, instance, node_id, le) (rate(node_process_duration_ms_bucket[%(rateWindow)s]))) > %(nodeProcessP95Ms)s
        ||| % c,
          'warning', 'A strategy node computes slowly.',
          'p95 compute time of node {{ $labels.node_id }} is {{ $value | printf "%%.0f" }} ms (threshold %(nodeProcessP95Ms)s ms).' % c),
        a('NodeFailures',
          'increase(node_process_failure_total[%(eventWindow)s]) > 0' % c,
          'warning', 'A strategy node fails to compute.',
          'Node {{ $labels.node_id }} on {{ $labels.instance }} failed to compute within the last %(eventWindow)s.' % c),
        // SLO = 0: stays firing until `qmtl ops cross-context reset` clears the series.
        a('CrossContextCacheHit',
          'cross_context_cache_hit_total > 0',
          'critical', 'A cache or queue was reached from a different compute context.',
          'Node {{ $labels.node_id }} saw {{ $value | humanize }} cross-context hits (world={{ $labels.world_id }}, domain={{ $labels.execution_domain }}, as_of={{ $labels.as_of }}, partition={{ $labels.partition }}). Promotions are blocked until reset.'),
      ],
    }],
  },
}
