local g = import '../lib/grafana.libsonnet';

{
  grafanaDashboards+:: {
    local c = $._config,
    local w = c.rateWindow,
    local f = g.filter(c),
    'qmtl-dagmanager-diff.json': g.dashboard(c, 'qmtl-dagmanager-diff', 'QMTL / DAG Manager diffs', c.dagmanagerSelector, [
      g.timeseries('Diff throughput (per minute)', [['job_instance:diff_requests:rate%s{%s} * 60' % [w, f], '{{instance}}']]),
      g.timeseries('Diff failure ratio', [['job_instance:diff_failure_ratio:rate%s{%s}' % [w, f], '{{instance}}']], 'percentunit'),
      g.timeseries('Diff duration p95 (ms)', [
        ['diff_duration_ms_p95{%s}' % f, 'window p95 {{instance}}'],
        ['job_instance:diff_duration_ms:p95_rate%s{%s}' % [w, f], 'histogram p95 {{instance}}'],
        ['histogram_quantile(0.95, sum by (le) (rate(diff_duration_ms_bucket{%s}[$__rate_interval])))' % f, 'p95 of selected instances (exemplars: trace ids)', g.exemplars],
      ], 'ms'),
      g.stat('Sentinel gaps', [['sentinel_gap_count{%s}' % f, '{{instance}}']]),
      g.stat('Leader (runs GC and the lag monitor)',
             [['dagmanager_leader{%s}' % f, '{{instance}}']],
             'short',
             'Exactly one replica should show 1.'),
      g.timeseries('Plan cache', [
        ['dagmanager_plan_cache_bytes{%s}' % f, 'bytes {{instance}}'],
        ['dagmanager_plan_cache_entries{%s}' % f, 'entries {{instance}}'],
      ], 'short', 'Parsed DAGs kept for re-submissions, bounded by dagmanager.plan_cache_bytes.'),
      g.timeseries('Graph store breaker', [
        ['graphstore_breaker_state{%s}' % f, 'open (1) / closed (0) {{instance}}'],
        ['graphstore_breaker_open_total{%s}' % f, 'times opened {{instance}}'],
      ]),
      g.timeseries('Backends answering (1) or not (0)',
                   [['qmtl_dependency_up{%s}' % f, '{{dependency}} ({{kind}}) {{instance}}']],
                   'short',
                   'Each check has a deadline; 0 names the backend that hangs (PostgresUnresponsive, KafkaUnresponsive).'),
    ]),
  },
}
