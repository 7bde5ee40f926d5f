local alert = import '../lib/alert.libsonnet';

{
  prometheusAlerts+:: {
    local c = $._config,
    local a(name, expr, severity, summary, description) =
      alert.new(c, name, expr, severity, summary, description, 'gateway'),
    groups+: [{
      name: 'qmtl-gateway',
      rules: [
        a('GatewayLatencyHigh', |||
          gateway_e2e_latency_p95 > %(gatewayLatencyP95Ms)s
          and on (job, instance)
          increase(gateway_e2e_latency_ms_count[%(rateWindow)s]) >= %(gatewayLatencyMinSubmissions)s
        ||| % c,
          'warning', 'Gateway submissions are slow.',
          'p95 submission latency on {{ $labels.instance }} is {{ $value | printf "%%.0f" }} ms (threshold %(gatewayLatencyP95Ms)s ms).' % c),
        a('LostRequests',
          'increase(lost_requests_total[%(eventWindow)s]) > 0' % c,
          'critical', 'The Gateway lost diff submissions.',
          'Submissions accepted by {{ $labels.instance }} could neither complete nor be durably handed off within the last %(eventWindow)s.' % c),
        a('DagClientBreakerOpen',
          'dagclient_breaker_state > 0',
          'critical', 'The Gateway circuit breaker to the DAG Manager is open.',
          'gRPC calls from {{ $labels.instance }} to the DAG Manager are refused; submissions wait in the durable log.'),
        // The gauge holds the latest ACK's latency; it only counts while freeze ACKs keep
        // coming: the alert resolves once none was seen for ackLatencyWindow, instead of
        // latching until the next apply.  ACK series are born at their first increment, so
        // "new in the window" is `x unless x offset W`, beside increase() for older series.
        a('ControlBusApplyAckLatencyHigh', |||
          controlbus_apply_ack_latency_ms{phase="freeze"} > %(freezeAckLatencyMs)s
          and on (job, instance, world_id, phase)
          (
            (controlbus_apply_ack_total{phase="freeze"} unless controlbus_apply_ack_total{phase="freeze"} offset %(ackLatencyWindow)s)
            or
            increase(controlbus_apply_ack_total{phase="freeze"}[%(ackLatencyWindow)s]) > 0
          )
        ||| % c,
          'warning', 'Freeze acknowledgements on the ControlBus are slow.',
          'The last freeze ACK for world {{ $labels.world_id }} took {{ $value | printf "%%.0f" }} ms (threshold %(freezeAckLatencyMs)s ms); it was sent within the last %(ackLatencyWindow)s.' % c),
        a('QmtlServiceDown',
          'up{%(qmtlJobSelector)s} == 0' % c,
          'critical', 'A QMTL process is not being scraped.',
          '{{ $labels.job }} at {{ $labels.instance }} is down or its /metrics does not answer.'),
      ],
    }],
  },
}
