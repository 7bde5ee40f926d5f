local alert = import '../lib/alert.libsonnet';

{
  prometheusAlerts+:: {
    local c = $._config,
    local dm = c.dagmanagerSelector,
    local a(name, expr, severity, summary, description) =
      alert.new(c, name, expr, severity, summary, description, 'dagmanager'),
    groups+: [{
      name: 'qmtl-dagmanager',
      rules: [
        // The p95 gauge covers the last 5 minutes; the `and` keeps the alert to diffs that
        // really happened in the window (it resolves once traffic stops).
        a('DiffDurationHigh',
          |||
            diff_duration_ms_p95{%(dm)s} > %(diffDurationP95Ms)s
            and on (job, instance)
            increase(diff_duration_ms_count{%(dm)s}[%(rateWindow)s]) > 0
          ||| % (c { dm: dm }),
          'warning',
          'DAG diffs are slow.',
          'p95 diff duration on {{ $labels.instance }} is {{ $value | printf "%%.0f" }} ms (threshold %(diffDurationP95Ms)s ms).' % c),
        // 0/0 is NaN and NaN > x is false, so no traffic never fires; the `and` makes it explicit.
        a('DiffFailureRateHigh',
          |||
            (
              sum by (job) (rate(diff_failures_total{%(dm)s}[%(rateWindow)s]))
            /
              sum by (job) (rate(diff_requests_total{%(dm)s}[%(rateWindow)s]))
            ) > %(diffFailureRatio)s
            and on (job) sum by (job) (rate(diff_requests_total{%(dm)s}[%(rateWindow)s])) > 0
          ||| % (c { dm: dm }),
          'critical',
          'Too many DAG diff requests fail.',
          '{{ $value | humanizePercentage }} of diff requests failed over the last %(rateWindow)s in {{ $labels.job }} (threshold %(diffFailureRatio)s).' % c),
        // Fires only for a DAG Manager that has served diffs since it started (a fresh
        // install with no strategies is quiet by design), and only once the rate window
        // is filled (`offset`): a stack that just started has no meaningful 5m rate.
        a('DiffThroughputLow',
          |||
            sum by (job) (rate(diff_requests_total{%(dm)s}[%(rateWindow)s])) * 60 < %(diffThroughputMinPerMinute)s
            and on (job) sum by (job) (diff_requests_total{%(dm)s}) > 0
            and on (job) sum by (job) (diff_requests_total{%(dm)s} offset %(rateWindow)s) >= 0
          ||| % (c { dm: dm }),
          'warning',
          'DAG diff throughput dropped.',
          '{{ $labels.job }} processes {{ $value | humanize }} diffs/min (minimum %(diffThroughputMinPerMinute)s/min) after having served traffic.' % c),
        a('QueueCreateErrors',
          alert.newOrIncreased(c, 'queue_create_error_total{%s}' % dm, c.eventWindow),
          'warning',
          'Queue (topic) creation is failing.',
          'Queue creation failed on {{ $labels.instance }} within the last %(eventWindow)s; diffs needing new queues fail.' % c),
        a('SentinelGap',
          'sentinel_gap_count{%s} > 0' % dm,
          'warning',
          'A strategy version has no diff sentinel.',
          '{{ $value | humanize }} strategy versions on {{ $labels.instance }} finished a diff without a sentinel.'),
        a('OrphanQueuesGrowing',
          'delta(orphan_queue_total{%s}[%s]) > 0' % [dm, c.orphanGrowthWindow],
          'warning',
          'Orphan queues keep accumulating.',
          'orphan_queue_total on {{ $labels.instance }} grew over the last %(orphanGrowthWindow)s; GC is not keeping up.' % c),
        a('QueueLagHigh',
          'queue_lag_seconds{%s} > on (job, instance, topic) queue_lag_threshold_seconds{%s}' % [dm, dm],
          'warning',
          'A queue consumer is lagging.',
          'Topic {{ $labels.topic }} is {{ $value | printf "%.0f" }} s behind, above its configured threshold.'),
        // GC runs on the leader replica only.  The newest GC run of the job counts: a
        // standby (which never runs GC) never fires it; a dead leader with no successor,
        // or no leader at all, does.  Before a replica's first run its start time stands
        // in, so a scheduler that never completes a run is caught too.
        a('GCSchedulerStall',
          |||
            time() - max by (job) (
                (gc_last_run_timestamp{%(dm)s} > 0)
              or on (job, instance)
                (process_start_time_seconds{%(dm)s} and on (job, instance) gc_last_run_timestamp{%(dm)s})
            ) > %(gcStallSeconds)s
          ||| % (c { dm: dm }),
          'warning',
          'The orphan-queue GC scheduler stalled.',
          'No GC run completed in {{ $labels.job }} (on any replica) for {{ $value | humanizeDuration }} (limit %(gcStallSeconds)ss).' % c),
        a('KafkaAdminBreakerOpen',
          'kafka_breaker_state{%s} > 0' % dm,
          'critical',
          'The DAG Manager Kafka admin circuit breaker is open.',
          'Kafka admin calls from {{ $labels.instance }} are refused after 3 consecutive failures; queues cannot be created.'),
        a('GraphStoreBreakerOpen',
          'graphstore_breaker_state{%s} > 0' % dm,
          'critical',
          'The DAG Manager graph store circuit breaker is open.',
          'Graph store calls from {{ $labels.instance }} are refused after 3 consecutive failures; diffs fail.'),
      ],
    }],
  },
}
