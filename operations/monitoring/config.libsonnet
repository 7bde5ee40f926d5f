// Thresholds, windows and `for` durations of every QMTL alert, in one place.
// The e2e suite renders the same mixin with shorter windows by overriding this object.
{
  _config+:: {
    // Selectors, one per component (kubernetes-mixin style): every alert, recording rule
    // and panel selects QMTL's own series through these, so the bundle is safe in a
    // Prometheus shared with other applications whose metrics have the same names.
    // The defaults are the job names of `qmtl up` and of the services chart's
    // ServiceMonitors / strategy PodMonitor.
    dagmanagerSelector: 'job="qmtl-dagmanager"',
    gatewaySelector: 'job="qmtl-gateway"',
    worldserviceSelector: 'job="qmtl-worldservice"',
    sdkSelector: 'job="qmtl-sdk"',
    // ControlBus metrics come from Gateways and WorldServices.
    controlbusSelector: 'job=~"qmtl-gateway|qmtl-worldservice"',
    // Every QMTL process.
    qmtlSelector: 'job=~"qmtl-dagmanager|qmtl-gateway|qmtl-worldservice|qmtl-sdk"',
    // Prometheus' own metrics (self-alerts: rule failures, Alertmanager unreachable).
    prometheusSelector: 'job="prometheus"',
    // Render the Prometheus self-alerts (turn off where another bundle, e.g.
    // kube-prometheus, already alerts on the shared Prometheus).
    prometheusSelfAlerts: true,
    // Dashboards: a cluster variable (and matcher) for Prometheus setups that hold several
    // clusters' series, labelled by clusterLabel.
    showMultiCluster: false,
    clusterLabel: 'cluster',
    // Jobs whose disappearance from Prometheus (no target at all) pages: QmtlJobAbsent.
    // Strategies (qmtl-sdk) come and go, so they are not listed by default.
    absentJobs: {
      dagmanager: $._config.dagmanagerSelector,
      gateway: $._config.gatewaySelector,
      worldservice: $._config.worldserviceSelector,
    },
    // Runbook sections live in docs/runbooks.md; anchors are the lower-cased alert names.
    // Operators point this at the URL their documentation is served from.
    runbookBaseUrl: 'docs/runbooks.md',  // set to where your docs are served

    // Windows of rate()/increase(); the diff SLOs are defined over 5m.
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
    // GatewayLatencyHigh needs this many submissions in rateWindow: one slow cold-start
    // submission is noise, while QMTL's real traffic (a submission a minute) must page.
    gatewayLatencyMinSubmissions: '3',
    gcStallSeconds: '600',
    nodeProcessP95Ms: '500',
    allocationStaleRatio: '0.1',
    freezeAckLatencyMs: '5000',
    worldApplyFailureRatio: '0.25',
    // AlertmanagerUnreachable: this many failed requests to one Alertmanager in the window.
    alertmanagerErrorWindow: '5m',
    alertmanagerMinErrors: '3',
    // WorldApplyFailureRateHigh needs this many runs in applyRateWindow: one failed run of
    // one is WorldApplyFailureDetected's, not a rate.
    worldApplyMinRuns: '4',

    // Service level objectives (SRE workbook / Sloth style).  Each renders recording rules
    // slo:sli_error:ratio_rate<window>{slo=...} and one alert with a page (critical) and a
    // ticket (warning) severity.  5xx answers are errors; 4xx are the client's.
    slos: {
      local gw = $._config.gatewaySelector,
      local dm = $._config.dagmanagerSelector,
      submission_availability: {
        alert: 'GatewayErrorBudgetBurn',
        area: 'gateway',
        title: 'Submission availability',
        objective: 0.999,
        description: 'Answers to POST /strategies that are not 5xx.',
        // `or ... * 0`: no 5xx at all is a ratio of 0, not an empty result.
        errorQuery: 'sum by (job) (rate(gateway_submissions_total{' + gw + ',code=~"5.."}[%(window)s])) or sum by (job) (rate(gateway_submissions_total{' + gw + '}[%(window)s])) * 0',
        totalQuery: 'sum by (job) (rate(gateway_submissions_total{' + gw + '}[%(window)s]))',
      },
      diff_success: {
        alert: 'DiffErrorBudgetBurn',
        area: 'dagmanager',
        title: 'Diff success',
        objective: 0.999,
        description: 'Diff requests that succeed.',
        errorQuery: 'sum by (job) (rate(diff_failures_total{' + dm + '}[%(window)s]))',
        totalQuery: 'sum by (job) (rate(diff_requests_total{' + dm + '}[%(window)s]))',
      },
      submission_latency: {
        alert: 'GatewayLatencyBudgetBurn',
        area: 'gateway',
        title: 'Submission latency',
        objective: 0.99,
        description: 'Submissions answered within 150 ms.',
        errorQuery: 'sum by (job) (rate(gateway_e2e_latency_ms_count{' + gw + '}[%(window)s])) - sum by (job) (rate(gateway_e2e_latency_ms_bucket{' + gw + ',le="150.0"}[%(window)s]))',
        totalQuery: 'sum by (job) (rate(gateway_e2e_latency_ms_count{' + gw + '}[%(window)s]))',
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
      // Meta: the dead-man's switch fires at once and for ever; a job gone from
      // Prometheus for 5 minutes pages.
      Watchdog: '0m',
      QmtlJobAbsent: '5m',
      PrometheusRuleEvaluationFailures: '5m',
      AlertmanagerUnreachable: '1m',
      // A dependency that stops answering is named within about a minute.
      PostgresUnresponsive: '30s',
      KafkaUnresponsive: '30s',
      DagManagerUnresponsive: '30s',
      WorldServiceUnresponsive: '30s',
      PromotionGuardSourceUnreachable: '2m',
      GatewaySheddingLoad: '5m',
      // Counters of silent loss: fire on the first event.
      EventRecorderErrors: '0m',
      BackfillFailures: '0m',
      ControlBusInvalidEvents: '0m',
      MetricLabelValuesDropped: '0m',
    },
  },
}
