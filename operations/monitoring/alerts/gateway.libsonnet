local alert = import '../lib/alert.libsonnet';

{
  prometheusAlerts+:: {
    local c = $._config,
    local gw = c.gatewaySelector,
    local a(name, expr, severity, summary, description) =
      alert.new(c, name, expr, severity, summary, description, 'gateway'),
    groups+: [{
      name: 'qmtl-gateway',
      rules: [
        // QMTL's traffic is a few submissions a minute: at one a minute the window holds
        // five and the alert fires; a single slow cold-start submission does not.  The
        // count also ends it once submissions stop (the p95 gauge would hold for minutes).
        a('GatewayLatencyHigh',
          |||
            gateway_e2e_latency_p95{%(gw)s} > %(gatewayLatencyP95Ms)s
            and on (job, instance)
            increase(gateway_e2e_latency_ms_count{%(gw)s}[%(rateWindow)s]) >= %(gatewayLatencyMinSubmissions)s
          ||| % (c { gw: gw }),
          'warning',
          'Gateway submissions are slow.',
          'p95 submission latency on {{ $labels.instance }} is {{ $value | printf "%%.0f" }} ms (threshold %(gatewayLatencyP95Ms)s ms).' % c),
        a('LostRequests',
          alert.newOrIncreased(c, 'lost_requests_total{%s}' % gw, c.eventWindow),
          'critical',
          'The Gateway lost diff submissions.',
          'Submissions accepted by {{ $labels.instance }} could neither complete nor be durably handed off within the last %(eventWindow)s.' % c),
        a('DagClientBreakerOpen',
          'dagclient_breaker_state{%s} > 0' % gw,
          'critical',
          'The Gateway circuit breaker to the DAG Manager is open.',
          'gRPC calls from {{ $labels.instance }} to the DAG Manager are refused; submissions wait in the durable log.'),
        // Admission control answers 429 beyond its bounds: the Gateway is at capacity.
        a('GatewaySheddingLoad',
          'sum by (job, instance) (rate(gateway_submissions_total{%s,code="429"}[%s])) > 0' % [gw, c.rateWindow],
          'warning',
          'The Gateway refuses submissions over its admission bounds.',
          '{{ $labels.instance }} answers {{ $value | humanize }} submissions/s with 429 (in-flight, byte or retry-backlog bound reached); add replicas or find what slows the DAG Manager.'),
        // The gauge holds the latest ACK's latency; it only counts while freeze ACKs keep
        // coming: the alert resolves once none was seen for ackLatencyWindow, instead of
        // latching until the next apply.  ACK series are born at their first increment, so
        // "new in the window" is `x unless x offset W`, beside increase() for older series.
        a('ControlBusApplyAckLatencyHigh',
          |||
            controlbus_apply_ack_latency_ms{%(gw)s,phase="freeze"} > %(freezeAckLatencyMs)s
            and on (job, instance, world_id, phase)
            (
              (controlbus_apply_ack_total{%(gw)s,phase="freeze"} unless controlbus_apply_ack_total{%(gw)s,phase="freeze"} offset %(ackLatencyWindow)s)
              or
              increase(controlbus_apply_ack_total{%(gw)s,phase="freeze"}[%(ackLatencyWindow)s]) > 0
            )
          ||| % (c { gw: gw }),
          'warning',
          'Freeze acknowledgements on the ControlBus are slow.',
          'The last freeze ACK for world {{ $labels.world_id }} took {{ $value | printf "%%.0f" }} ms (threshold %(freezeAckLatencyMs)s ms); it was sent within the last %(ackLatencyWindow)s.' % c),
        a('QmtlServiceDown',
          'up{%(qmtlSelector)s} == 0' % c,
          'critical',
          'A QMTL process is not being scraped.',
          '{{ $labels.job }} at {{ $labels.instance }} is down or its /metrics does not answer.'),
      ],
    }],
  },
}
