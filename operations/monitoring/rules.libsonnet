// Recording rules (level:metric:operation) used by dashboards and the packaged bundle.
// Levels keep `instance` where a dashboard filters by it (replicas); every rule selects
// QMTL's own jobs through the _config selectors.
{
  prometheusRules+:: {
    local c = $._config,
    local w = c.rateWindow,
    local dm = c.dagmanagerSelector,
    local gw = c.gatewaySelector,
    local ws = c.worldserviceSelector,
    local sdk = c.sdkSelector,
    local r(record, expr) = { record: record, expr: std.stripChars(expr, '\n ') },
    groups+: [{
      name: 'qmtl-recording',
      rules: [
        r('job_instance:diff_requests:rate' + w,
          'sum by (job, instance) (rate(diff_requests_total{%s}[%s]))' % [dm, w]),
        r('job_instance:diff_failures:rate' + w,
          'sum by (job, instance) (rate(diff_failures_total{%s}[%s]))' % [dm, w]),
        r('job_instance:diff_failure_ratio:rate' + w,
          'job_instance:diff_failures:rate%s / (job_instance:diff_requests:rate%s > 0)' % [w, w]),
        r('job_instance:diff_duration_ms:p95_rate' + w,
          'histogram_quantile(0.95, sum by (job, instance, le) (rate(diff_duration_ms_bucket{%s}[%s])))' % [dm, w]),
        r('job_instance:gateway_e2e_latency_ms:p95_rate' + w,
          'histogram_quantile(0.95, sum by (job, instance, le) (rate(gateway_e2e_latency_ms_bucket{%s}[%s])))' % [gw, w]),
        r('job_instance_node_id:node_processed:rate' + w,
          'sum by (job, instance, node_id) (rate(node_processed_total{%s}[%s]))' % [sdk, w]),
        r('job_instance_node_id:node_process_failures:rate' + w,
          'sum by (job, instance, node_id) (rate(node_process_failure_total{%s}[%s]))' % [sdk, w]),
        r('job_instance_node_id:node_process_duration_ms:p95_rate' + w,
          'histogram_quantile(0.95, sum by (job, instance, node_id, le) (rate(node_process_duration_ms_bucket{%s}[%s])))' % [sdk, w]),
        r('job_instance:nodecache_resident_bytes:sum',
          'sum by (job, instance) (nodecache_resident_bytes{%s,scope="total"})' % sdk),
        r('job_topic:queue_lag_seconds:max', 'max by (job, topic) (queue_lag_seconds{%s})' % dm),
        r('job_topic:queue_lag_threshold_ratio:max',
          'max by (job, topic) (queue_lag_seconds{%s} / (queue_lag_threshold_seconds{%s} > 0))' % [dm, dm]),
        r('world_id:world_apply_success:ratio_kept_runs', |||
          sum by (world_id) (world_apply_run_total{%(ws)s,status="success"})
          / (sum by (world_id) (world_apply_run_total{%(ws)s,status="started"}) > 0)
        ||| % { ws: ws }),
        r('world_id:controlbus_apply_ack_latency_ms:max',
          'max by (world_id, phase) (controlbus_apply_ack_latency_ms{%s})' % gw),
      ],
    }],
  },
}
