// Every panel uses only metrics of the catalogue in shared design notes (section 2).
local g = import '../lib/grafana.libsonnet';

{
  grafanaDashboards+:: {
    local c = $._config,
    local w = c.rateWindow,
    // Per-instance series follow the dashboard's instance selector (replicas).
    local i = '{instance=~"$instance"}',

    'qmtl-queues-gc.json': g.dashboard('qmtl-queues-gc', 'QMTL / Queues & GC', [
      g.timeseries('Orphan queues', [['orphan_queue_total' + i, '{{instance}}']], 'short',
                   'Queues no node emits, counted at the last GC run (orphan_queue_total).'),
      g.timeseries('Seconds since last GC run', [['time() - gc_last_run_timestamp' + i, '{{instance}}']], 's',
                   'GCSchedulerStall fires above %(gcStallSeconds)s s.' % c),
      g.timeseries('Queue lag (s) vs threshold', [
        ['queue_lag_seconds' + i, 'lag {{topic}}'],
        ['queue_lag_threshold_seconds' + i, 'threshold {{topic}}'],
      ], 's'),
      g.timeseries('Queue lag (messages)', [['queue_lag_messages' + i, '{{topic}}']]),
      g.timeseries('Queue creation errors', [['increase(queue_create_error_total%s[%s])' % [i, w], '{{instance}}']]),
      g.timeseries('Kafka admin breaker', [
        ['kafka_breaker_state' + i, 'open (1) / closed (0) {{instance}}'],
        ['kafka_breaker_open_total' + i, 'times opened {{instance}}'],
      ]),
    ]),

    'qmtl-dagmanager-diff.json': g.dashboard('qmtl-dagmanager-diff', 'QMTL / DAG Manager diffs', [
      g.timeseries('Diff throughput (per minute)', [['job:diff_requests:rate%s * 60' % w, '{{job}}']]),
      g.timeseries('Diff failure ratio', [['job:diff_failure_ratio:rate%s' % w, '{{job}}']], 'percentunit'),
      g.timeseries('Diff duration p95 (ms)', [
        ['diff_duration_ms_p95' + i, 'window p95 {{instance}}'],
        ['job:diff_duration_ms:p95_rate%s' % w, 'histogram p95 {{job}}'],
        ['histogram_quantile(0.95, sum by (le) (rate(diff_duration_ms_bucket%s[%s])))' % [i, w], 'p95 of selected instances (exemplars: trace ids)', g.exemplars],
      ], 'ms'),
      g.stat('Sentinel gaps', [['sentinel_gap_count' + i, '{{instance}}']]),
      g.stat('Leader (runs GC and the lag monitor)', [['dagmanager_leader' + i, '{{instance}}']], 'short',
             'Exactly one replica should show 1.'),
      g.timeseries('Plan cache', [
        ['dagmanager_plan_cache_bytes' + i, 'bytes {{instance}}'],
        ['dagmanager_plan_cache_entries' + i, 'entries {{instance}}'],
      ], 'short', 'Parsed DAGs kept for re-submissions, bounded by dagmanager.plan_cache_bytes.'),
      g.timeseries('Graph store breaker', [
        ['graphstore_breaker_state' + i, 'open (1) / closed (0) {{instance}}'],
        ['graphstore_breaker_open_total' + i, 'times opened {{instance}}'],
      ]),
    ]),

    'qmtl-gateway.json': g.dashboard('qmtl-gateway', 'QMTL / Gateway', [
      g.timeseries('Submission latency p95 (ms)', [
        ['gateway_e2e_latency_p95' + i, 'window p95 {{instance}}'],
        ['job:gateway_e2e_latency_ms:p95_rate%s' % w, 'histogram p95 {{job}}'],
        ['histogram_quantile(0.95, sum by (le) (rate(gateway_e2e_latency_ms_bucket%s[%s])))' % [i, w], 'p95 of selected instances (exemplars: trace ids)', g.exemplars],
      ], 'ms'),
      g.timeseries('Submissions per second', [['sum by (job) (rate(gateway_e2e_latency_ms_count[%s]))' % w, '{{job}}']], 'reqps'),
      g.timeseries('Answers by status code', [['sum by (code) (rate(gateway_submissions_total[%s]))' % w, '{{code}}']], 'reqps',
                   '5xx answers burn the submission-availability error budget; 4xx are the client\'s.'),
      g.stat('Lost requests', [['sum(lost_requests_total)', 'lost']]),
      g.timeseries('DAG client breaker', [
        ['dagclient_breaker_state' + i, 'open (1) / closed (0) {{instance}}'],
        ['dagclient_breaker_open_total' + i, 'times opened {{instance}}'],
      ]),
    ]),

    'qmtl-sdk-nodes.json': g.dashboard('qmtl-sdk-nodes', 'QMTL / SDK nodes & cache', [
      g.timeseries('Node executions per second', [['node_id:node_processed:rate%s' % w, '{{node_id}}']], 'ops'),
      g.timeseries('Node failures per second', [['node_id:node_process_failures:rate%s' % w, '{{node_id}}']], 'ops'),
      g.timeseries('Node compute p95 (ms)', [
        ['node_id:node_process_duration_ms:p95_rate%s' % w, '{{node_id}}'],
        ['histogram_quantile(0.95, sum by (le) (rate(node_process_duration_ms_bucket%s[%s])))' % [i, w], 'all nodes (exemplars with per-node tracing)', g.exemplars],
      ], 'ms'),
      g.timeseries('Cache reads per second', [['sum by (upstream_id, interval) (rate(cache_read_total[%s]))' % w, '{{upstream_id}} / {{interval}}']], 'ops'),
      g.timeseries('Seconds since last cache read', [['time() - cache_last_read_timestamp' + i, '{{upstream_id}} / {{interval}}']], 's'),
      g.timeseries('Node cache resident bytes', [
        ['job:nodecache_resident_bytes:sum', 'total {{job}}'],
        ['nodecache_resident_bytes{scope="node",instance=~"$instance"}', '{{node_id}}'],
      ], 'bytes'),
      g.timeseries('Event recorder errors', [['sum by (recorder) (increase(event_recorder_errors_total[%s]))' % w, '{{recorder}}']]),
    ]),

    'qmtl-backfill.json': g.dashboard('qmtl-backfill', 'QMTL / Backfill', [
      g.stat('Backfill jobs in progress', [['sum(backfill_jobs_in_progress)', 'jobs']]),
      g.timeseries('Latest backfilled timestamp', [['backfill_last_timestamp%s * 1000' % i, '{{node_id}} / {{interval}}']], 'dateTimeAsIso'),
      g.timeseries('Backfill retries', [['sum by (node_id) (increase(backfill_retry_total[%s]))' % w, '{{node_id}}']]),
      g.timeseries('Backfill failures', [['sum by (node_id) (increase(backfill_failure_total[%s]))' % w, '{{node_id}}']]),
    ]),

    'qmtl-worldservice-apply.json': g.dashboard('qmtl-worldservice-apply', 'QMTL / World apply health', [
      g.timeseries('Apply success rate (kept runs)', [['world_id:world_apply_success:ratio_kept_runs', '{{world_id}}']], 'percentunit',
                   'Successful / started apply runs over the runs each world keeps in its metrics.'),
      g.timeseries('Allocation freshness: stale snapshot ratio', [['world_allocation_snapshot_stale_ratio', '{{world_id}}']], 'percentunit',
                   'Share of current snapshots older than 5 minutes; alert above %(allocationStaleRatio)s.' % c),
      g.timeseries('Apply ACK latency (ms)', [['world_id:controlbus_apply_ack_latency_ms:max', '{{world_id}} {{phase}}']], 'ms'),
      g.timeseries('Apply ACKs received', [['sum by (world_id, phase) (controlbus_apply_ack_total)', '{{world_id}} {{phase}}']]),
      g.timeseries('Apply failures by stage', [['sum by (world_id, stage) (world_apply_failure_total)', '{{world_id}} {{stage}}']]),
    ]),

    'qmtl-cross-context.json': g.dashboard('qmtl-cross-context', 'QMTL / Cross-context cache hits (SLO 0)', [
      g.stat('Cross-context hits (must be 0)', [['sum(cross_context_cache_hit_total) or vector(0)', 'hits']]),
      g.timeseries('Offending contexts', [['cross_context_cache_hit_total', '{{node_id}} world={{world_id}} domain={{execution_domain}} as_of={{as_of}} partition={{partition}}']]),
    ]),
  },
}
