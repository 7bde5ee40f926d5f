local g = import '../lib/grafana.libsonnet';

{
  grafanaDashboards+:: {
    local c = $._config,
    local w = c.rateWindow,
    local f = g.filter(c),
    'qmtl-gateway.json': g.dashboard(c, 'qmtl-gateway', 'QMTL / Gateway', c.gatewaySelector, [
      g.timeseries('Submission latency p95 (ms)', [
        ['gateway_e2e_latency_p95{%s}' % f, 'window p95 {{instance}}'],
        ['job_instance:gateway_e2e_latency_ms:p95_rate%s{%s}' % [w, f], 'histogram p95 {{instance}}'],
        ['histogram_quantile(0.95, sum by (le) (rate(gateway_e2e_latency_ms_bucket{%s}[$__rate_interval])))' % f, 'p95 of selected instances (exemplars: trace ids)', g.exemplars],
      ], 'ms'),
      g.timeseries('Submissions per second', [['sum by (instance) (rate(gateway_e2e_latency_ms_count{%s}[$__rate_interval]))' % f, '{{instance}}']], 'reqps'),
      g.timeseries('Answers by status code',
                   [['sum by (code) (rate(gateway_submissions_total{%s}[$__rate_interval]))' % f, '{{code}}']],
                   'reqps',
                   "5xx answers burn the submission-availability error budget; 4xx are the client's; 429 is admission control shedding load."),
      g.timeseries('Submissions in flight',
                   [['gateway_submissions_in_flight{%s}' % f, '{{instance}}']],
                   'short',
                   'Bounded by gateway.max_in_flight_submissions: beyond it new submissions get 429.'),
      g.stat('Lost requests', [['sum(lost_requests_total{%s})' % f, 'lost']]),
      g.timeseries('DAG client breaker', [
        ['dagclient_breaker_state{%s}' % f, 'open (1) / closed (0) {{instance}}'],
        ['dagclient_breaker_open_total{%s}' % f, 'times opened {{instance}}'],
      ]),
      g.timeseries('Backends answering (1) or not (0)',
                   [['qmtl_dependency_up{%s}' % f, '{{dependency}} ({{kind}}) {{instance}}']],
                   'short',
                   'DAG Manager, WorldService, submission log: 0 names the one that hangs.'),
      g.timeseries('ControlBus events skipped as malformed', [['sum by (reason) (increase(controlbus_invalid_events_total{%s}[$__rate_interval]))' % f, '{{reason}}']]),
    ], annotations=[
      g.annotation('Apply runs',
                   'sum by (world_id, run_id, status) (changes(world_apply_run_total{%s,status=~"success|failure"}[2m])) > 0' % c.worldserviceSelector,
                   'apply {{run_id}}: {{status}}',
                   'world {{world_id}}'),
    ]),
  },
}
