// Thresholds, windows and `for` durations of every QMTL alert, in one place.
// The e2e suite renders the same mixin with shorter windows by overriding this object.
{
  _config+:: {
    // Selector for the scrape jobs of QMTL processes (used by the service-down alert).
    qmtlJobSelector: 'job=~"qmtl-.*"',
    // Runbook sections live in docs/runbooks.md; anchors are the lower-cased alert names.
    // Operators point this at the URL their documentation is served from.
    runbookBaseUrl: 'docs/runbooks.md',  // set to where your docs are served

    // Windows of rate()/increase(); the seed fixes 5m for the diff SLOs.
    rateWindow: '5m',
    eventWindow: '10m',  // how long a one-off event (lost request, failure) keeps an alert firing
    orphanGrowthWindow: '3h',
    applyRateWindow: '30m',
    // A slow freeze ACK keeps ControlBusApplyAckLatencyHigh firing this long (then it resolves).
    ackLatencyWindow: '15m',

    // Thresholds (units in the names), as strings so they render exactly as written.
    diffDurationP95Ms: '200',
    diffFailureRatio: '0.05',
    diffThroughputMinPerMinute: '0.6',
    nodeCacheTotalBytes: '5e9',  // 5 GB
    gatewayLatencyP95Ms: '150',
    // GatewayLatencyHigh needs this many submissions in rateWindow: the p95 of a handful of
    // cold-start submissions on a busy machine is noise, not a slow Gateway.
    gatewayLatencyMinSubmissions: '20',
    gcStallSeconds: '600',
    nodeProcessP95Ms: '500',
    allocationStaleRatio: '0.1',
    freezeAckLatencyMs: '5000',
    worldApplyFailureRatio: '0.25',

    // Service level objectives (SRE workbook / Sloth style).  Each renders recording rules
    // slo:sli_error:ratio_rate<window>{slo=...} and one alert with a page (critical) and a
    // ticket (warning) severity.  5xx answers are errors; 4xx are the client's.
    slos: {
      submission_availability: {
        alert: 'GatewayErrorBudgetBurn',
        area: 'gateway',
        title: 'Submission availability',
        objective: 0.999,
        description: 'Answers to POST /strategies that are not 5xx.',
        // `or ... * 0`: no 5xx at all is a ratio of 0, not an empty result.
        errorQuery: 'sum by (job) (rate(gateway_submissions_total{code=~"5.."}[%(window)s])) or sum by (job) (rate(gateway_submissions_total[%(window)s])) * 0',
        totalQuery: 'sum by (job) (rate(gateway_submissions_total[%(window)s]))',
      },
      diff_success: {
        alert: 'DiffErrorBudgetBurn',
        area: 'dagmanager',
        title: 'Diff success',
        objective: 0.999,
        description: 'Diff requests that succeed.',
        errorQuery: 'sum by (job) (rate(diff_failures_total[%(window)s]))',
        totalQuery: 'sum by (job) (rate(diff_requests_total[%(window)s]))',
      },
      submission_latency: {
        alert: 'GatewayLatencyBudgetBurn',
        area: 'gateway',
        title: 'Submission latency',
        objective: 0.99,
        description: 'Submissions answered within 150 ms.',
        errorQuery: 'sum by (job) (rate(gateway_e2e_latency_ms_count[%(window)s])) - sum by (job) (rate(gateway_e2e_latency_ms_bucket{le="150.0"}[%(window)s]))',
        totalQuery: 'sum by (job) (rate(gateway_e2e_latency_ms_count[%(window)s]))',
      },
    },
    // Burn-rate policy (SRE workbook table 5-8): page on 2% of a 30-day budget in 1h or
    // 5% in 6h, ticket on 10% in 1d or 10% in 3d; each confirmed by a short window.
    sloPolicy: {
      page: [{ long: '1h', short: '5m', factor: 14.4 }, { long: '6h', short: '30m', factor: 6 }],
      ticket: [{ long: '1d', short: '2h', factor: 3 }, { long: '3d', short: '6h', factor: 1 }],
    },
    // Fewer events than this in the long window never alert: one failed request out of
    // two at night is not an outage.
    sloMinEvents: { page: 30, ticket: 100 },
    sloFor: { page: '2m', ticket: '15m' },
    sloBudgetDays: 30,

    // `for:` per alert. Event-style alerts (counters that moved) fire at once.
    'for': {
      DiffDurationHigh: '5m',
      DiffFailureRateHigh: '5m',
      DiffThroughputLow: '10m',
      NodeCacheMemoryHigh: '5m',
      QueueCreateErrors: '0m',
      SentinelGap: '5m',
      OrphanQueuesGrowing: '15m',
      QueueLagHigh: '5m',
      GatewayLatencyHigh: '5m',
      LostRequests: '0m',
      GCSchedulerStall: '0m',
      NodeSlowProcessing: '5m',
      NodeFailures: '0m',
      CrossContextCacheHit: '0m',
      WorldApplyFailureDetected: '0m',
      WorldApplyFailureRateHigh: '5m',
      WorldAllocationSnapshotStale: '5m',
      ControlBusApplyAckLatencyHigh: '2m',
      KafkaAdminBreakerOpen: '1m',
      DagClientBreakerOpen: '1m',
      GraphStoreBreakerOpen: '1m',
      QmtlServiceDown: '2m',
    },
  },
}
