local g = import '../lib/grafana.libsonnet';

{
  grafanaDashboards+:: {
    local c = $._config,
    local f = g.filter(c),
    'qmtl-worldservice-apply.json': g.dashboard(c, 'qmtl-worldservice-apply', 'QMTL / World apply health', c.worldserviceSelector, [
      g.timeseries('Apply success rate (kept runs)',
                   [['world_id:world_apply_success:ratio_kept_runs', '{{world_id}}']],
                   'percentunit',
                   'Successful / started apply runs over the runs each world keeps in its metrics.'),
      g.timeseries('Allocation freshness: stale snapshot ratio',
                   [['world_allocation_snapshot_stale_ratio{%s}' % f, '{{world_id}}']],
                   'percentunit',
                   'Share of current snapshots older than 5 minutes; alert above %(allocationStaleRatio)s.' % c),
      g.timeseries('Apply ACK latency (ms)', [['world_id:controlbus_apply_ack_latency_ms:max', '{{world_id}} {{phase}}']], 'ms'),
      g.timeseries('Apply ACKs received', [['sum by (world_id, phase) (controlbus_apply_ack_total{%s})' % c.gatewaySelector, '{{world_id}} {{phase}}']]),
      g.timeseries('Apply failures by stage', [['sum by (world_id, stage) (world_apply_failure_total{%s})' % f, '{{world_id}} {{stage}}']]),
      g.timeseries('Promotion guard: sources it cannot read',
                   [['promotion_guard_unreachable_sources{%s}' % f, '{{kind}} {{instance}}']],
                   'short',
                   'static: every apply is refused; registered: applies of their world wait (PromotionGuardSourceUnreachable).'),
    ], annotations=[
      g.annotation('Apply runs',
                   'sum by (world_id, run_id, status) (changes(world_apply_run_total{%s,status=~"success|failure"}[2m])) > 0' % c.worldserviceSelector,
                   'apply {{run_id}}: {{status}}',
                   'world {{world_id}}'),
    ]),
  },
}
