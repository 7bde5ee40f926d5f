// Recording rules (level:metric:operation) used by dashboards and the packaged bundle.
{
  prometheusRules+:: {
    local c = $._config,
    local w = c.rateWindow,
    local r(record, expr) = { record: record, expr: std.stripChars(expr, '\n ') },
    groups+: [{
      name: 'qmtl-recording',
      rules: [
        r('job:diff_requests:rate' + w, 'sum by (job) (rate(diff_requests_total[%s]))' % w),
        r('job:diff_failures:rate' + w, 'sum by (job) (rate(diff_failures_total[%s]))' % w),
        r('job:diff_failure_ratio:rate' + w,
          'job:diff_failures:rate%s / (job:diff_requests:rate%s > 0)' % [w, w]),
        r('job:diff_duration_ms:p95_rate' + w,
          'histogram_quantile(0.95, sum by (job, le) (rate(diff_duration_ms_bucket[%s])))' % w),
        r('job:gateway_e2e_latency_ms:p95_rate' + w,
          'histogram_quantile(0.95, sum by (job, le) (rate(gateway_e2e_latency_ms_bucket[%s])))' % w),
        r('node_id:node_processed:rate' + w,
          'sum by (job, node_id) (rate(node_processed_total[%s]))' % w),
        r('node_id:node_process_failures:rate' + w,
          'sum by (job, node_id) (rate(node_process_failure_total[%s]))' % w),
        r('node_id:node_process_duration_ms:p95_rate' + w,
          'histogram_quantile(0.95, sum by (job, node_id, le) (rate(node_process_duration_ms_bucket[%s])))' % w),
        r('job:nodecache_resident_bytes:sum', 'sum by (job) (nodecache_resident_bytes{scope="total"})'),
        r('topic:queue_lag_seconds:max', 'max by (topic) (queue_lag_seconds)'),
        r('topic:queue_lag_threshold_ratio:max',
          'max by (topic) (queue_lag_seconds / (queue_lag_threshold_seconds > 0))'),
        r('world_id:world_apply_success:ratio_kept_runs', |||
          sum by (world_id) (world_apply_run_total{status="success"})
          / (sum by (world_id) (world_apply_run_total{status="started"}) > 0)
        |||),
        r('world_id:controlbus_apply_ack_latency_ms:max',
          'max by (world_id, phase) (controlbus_apply_ack_latency_ms)'),
      ],
    }],
  },
}
