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
    gcStallSeconds: '600',
    nodeProcessP95Ms: '500',
    allocationStaleRatio: '0.1',
    freezeAckLatencyMs: '5000',
    worldApplyFailureRatio: '0.25',

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
