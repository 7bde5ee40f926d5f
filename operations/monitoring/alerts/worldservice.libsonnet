local alert = import '../lib/alert.libsonnet';

{
  prometheusAlerts+:: {
    local c = $._config,
    local ws = c.worldserviceSelector,
    local a(name, expr, severity, summary, description) =
      alert.new(c, name, expr, severity, summary, description, 'worldservice'),
    // Each apply run has its own run_id series, born at its first increment, so
    // rate()/increase() cannot see it; "present now but not <window> ago" can.
    local newRuns(status, window) =
      'world_apply_run_total{%s,status="%s"} unless world_apply_run_total{%s,status="%s"} offset %s' % [ws, status, ws, status, window],
    groups+: [{
      name: 'qmtl-worldservice',
      rules: [
        a('WorldApplyFailureDetected',
          |||
            (world_apply_failure_total{%(ws)s} unless world_apply_failure_total{%(ws)s} offset %(eventWindow)s)
            or
            (increase(world_apply_failure_total{%(ws)s}[%(eventWindow)s]) > 0)
          ||| % (c { ws: ws }),
          'warning',
          'A world apply run failed.',
          'Apply run {{ $labels.run_id }} of world {{ $labels.world_id }} failed in stage {{ $labels.stage }}.'),
        // A rate needs runs: with fewer than worldApplyMinRuns in the window, a failure is
        // WorldApplyFailureDetected's alone (one failed run of one must not page twice).
        a('WorldApplyFailureRateHigh',
          |||
            count by (world_id) (%(failed)s)
            /
            count by (world_id) (%(started)s)
            > %(ratio)s
            and on (world_id)
            count by (world_id) (%(started)s) >= %(min)s
          ||| % {
            failed: newRuns('failure', c.applyRateWindow),
            started: newRuns('started', c.applyRateWindow),
            ratio: c.worldApplyFailureRatio,
            min: c.worldApplyMinRuns,
          },
          'critical',
          'Many world apply runs fail.',
          '{{ $value | humanizePercentage }} of apply runs of world {{ $labels.world_id }} failed in the last %(applyRateWindow)s (threshold %(worldApplyFailureRatio)s, at least %(worldApplyMinRuns)s runs).' % c),
        a('WorldAllocationSnapshotStale',
          'world_allocation_snapshot_stale_ratio{%s} > %s' % [ws, c.allocationStaleRatio],
          'warning',
          'World allocation snapshots are stale.',
          '{{ $value | humanizePercentage }} of allocation snapshots of world {{ $labels.world_id }} are older than 5 minutes.'),
        // Only the operator's sources (the DAG Manager, cross_context_sources): they block
        // every world.  An SDK process that ended is unreachable until it is forgotten,
        // which is normal; `qmtl ops cross-context show` lists those.
        a('PromotionGuardSourceUnreachable',
          'promotion_guard_unreachable_sources{%s,kind="static"} > 0' % ws,
          'warning',
          'The promotion guard cannot read a configured source.',
          '{{ $labels.instance }} cannot read {{ $value | humanize }} configured cross-context source(s); every apply is refused (503 promotion_guard_unavailable) until it answers.'),
        a('ControlBusInvalidEvents',
          alert.newOrIncreased(c, 'controlbus_invalid_events_total{%(controlbusSelector)s}' % c, c.eventWindow),
          'warning',
          'ControlBus events are malformed and skipped.',
          '{{ $labels.instance }} skipped ControlBus events ({{ $labels.reason }}) within the last %(eventWindow)s; a publisher sends events this version cannot read.' % c),
      ],
    }],
  },
}
