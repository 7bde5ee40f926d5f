local alert = import '../lib/alert.libsonnet';

{
  prometheusAlerts+:: {
    local c = $._config,
    local a(name, expr, severity, summary, description) =
      alert.new(c, name, expr, severity, summary, description, 'worldservice'),
    // Each apply run has its own run_id series, born at its first increment, so
    // rate()/increase() cannot see it; "present now but not <window> ago" can.
    local newRuns(status, window) =
      'world_apply_run_total{status="%s"} unless world_apply_run_total{status="%s"} offset %s' % [status, status, window],
    groups+: [{
      name: 'qmtl-worldservice',
      rules: [
        a('WorldApplyFailureDetected', |||
          (world_apply_failure_total unless world_apply_failure_total offset %(eventWindow)s)
          or
          (increase(world_apply_failure_total[%(eventWindow)s]) > 0)
        ||| % c,
          'warning', 'A world apply run failed.',
          'Apply run {{ $labels.run_id }} of world {{ $labels.world_id }} failed in stage {{ $labels.stage }}.'),
        a('WorldApplyFailureRateHigh', |||
          count by (world_id) (%(failed)s)
          /
          count by (world_id) (%(started)s)
          > %(ratio)s
        ||| % {
          failed: newRuns('failure', c.applyRateWindow),
          started: newRuns('started', c.applyRateWindow),
          ratio: c.worldApplyFailureRatio,
        },
          'critical', 'Many world apply runs fail.',
          '{{ $value | humanizePercentage }} of apply runs of world {{ $labels.world_id }} failed in the last %(applyRateWindow)s (threshold %(worldApplyFailureRatio)s).' % c),
        a('WorldAllocationSnapshotStale',
          'world_allocation_snapshot_stale_ratio > %(allocationStaleRatio)s' % c,
          'warning', 'World allocation snapshots are stale.',
          '{{ $value | humanizePercentage }} of allocation snapshots of world {{ $labels.world_id }} are older than 5 minutes.'),
      ],
    }],
  },
}
