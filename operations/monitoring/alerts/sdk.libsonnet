local alert = import '../lib/alert.libsonnet';

{
  prometheusAlerts+:: {
    local c = $._config,
    local sdk = c.sdkSelector,
    local a(name, expr, severity, summary, description) =
      alert.new(c, name, expr, severity, summary, description, 'sdk'),
    groups+: [{
      name: 'qmtl-sdk',
      rules: [
        a('NodeCacheMemoryHigh',
          'nodecache_resident_bytes{%s,scope="total"} > %s' % [sdk, c.nodeCacheTotalBytes],
          'warning',
          'SDK node caches use too much memory.',
          'Node caches on {{ $labels.instance }} hold {{ $value | humanize1024 }}B (threshold %(nodeCacheTotalBytes)s bytes).' % c),
        a('NodeSlowProcessing',
          |||
            histogram_quantile(0.95, sum by (job, instance, node_id, le) (rate(node_process_duration_ms_bucket{%(sdk)s}[%(rateWindow)s]))) > %(nodeProcessP95Ms)s
          ||| % (c { sdk: sdk }),
          'warning',
          'A strategy node computes slowly.',
          'p95 compute time of node {{ $labels.node_id }} is {{ $value | printf "%%.0f" }} ms (threshold %(nodeProcessP95Ms)s ms).' % c),
        // A backtest can fail before its first scrape (its series appear above zero).
        a('NodeFailures',
          alert.newOrIncreased(c, 'node_process_failure_total{%s}' % sdk, c.eventWindow),
          'warning',
          'A strategy node fails to compute.',
          'Node {{ $labels.node_id }} on {{ $labels.instance }} failed to compute within the last %(eventWindow)s.' % c),
        // SLO = 0: stays firing until `qmtl ops cross-context reset` clears the series.  The
        // DAG Manager counts it too (a diff under a second context with shared queues).
        a('CrossContextCacheHit',
          'cross_context_cache_hit_total{%(qmtlSelector)s} > 0' % c,
          'critical',
          'A cache or queue was reached from a different compute context.',
          'Node {{ $labels.node_id }} saw {{ $value | humanize }} cross-context hits (world={{ $labels.world_id }}, domain={{ $labels.execution_domain }}, as_of={{ $labels.as_of }}, partition={{ $labels.partition }}). Promotions are blocked until reset.'),
        a('EventRecorderErrors',
          alert.newOrIncreased(c, 'event_recorder_errors_total{%s}' % sdk, c.eventWindow),
          'warning',
          'The event recorder failed to persist stream rows.',
          '{{ $labels.instance }} could not persist rows to its {{ $labels.recorder }} recorder within the last %(eventWindow)s; those payloads are missing from the record.' % c),
        a('BackfillFailures',
          alert.newOrIncreased(c, 'backfill_failure_total{%s}' % sdk, c.eventWindow),
          'warning',
          'A backfill job failed for good.',
          'Backfill of node {{ $labels.node_id }} (interval {{ $labels.interval }}) on {{ $labels.instance }} gave up after its retries within the last %(eventWindow)s; the node starts without that history.' % c),
      ],
    }],
  },
}
