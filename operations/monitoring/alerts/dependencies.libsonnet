// A backend that accepts connections and never answers (a stopped or stuck PostgreSQL,
// broker or service) fails no call quickly, so breakers and error rates react late or
// not at all.  Every service checks its backends with a deadline
// (qmtl_dependency_up{dependency, kind}); these alerts name the one that hangs.
local alert = import '../lib/alert.libsonnet';

{
  prometheusAlerts+:: {
    local c = $._config,
    local a(name, expr, severity, summary, description) =
      alert.new(c, name, expr, severity, summary, description, 'dependencies'),
    groups+: [{
      name: 'qmtl-dependencies',
      rules: [
        a('PostgresUnresponsive',
          'qmtl_dependency_up{%(qmtlSelector)s,kind="postgresql"} == 0' % c,
          'critical',
          'PostgreSQL does not answer a QMTL service.',
          '{{ $labels.job }} at {{ $labels.instance }} gets no answer from its PostgreSQL {{ $labels.dependency }} within the check deadline; calls into it wait and then fail.'),
        a('KafkaUnresponsive',
          'qmtl_dependency_up{%(qmtlSelector)s,kind="kafka"} == 0' % c,
          'critical',
          'Kafka does not answer a QMTL service.',
          '{{ $labels.job }} at {{ $labels.instance }} gets no answer from the Kafka brokers of its {{ $labels.dependency }} within the check deadline.'),
        a('DagManagerUnresponsive',
          'qmtl_dependency_up{%(gatewaySelector)s,dependency="dagmanager"} == 0' % c,
          'critical',
          'The DAG Manager does not answer the Gateway.',
          'The Gateway at {{ $labels.instance }} gets no answer from the DAG Manager within the check deadline; submissions wait in its log.'),
        a('WorldServiceUnresponsive',
          'qmtl_dependency_up{%(gatewaySelector)s,dependency="worldservice"} == 0' % c,
          'warning',
          'The WorldService does not answer the Gateway.',
          'The Gateway at {{ $labels.instance }} gets no answer from the WorldService hosting the ControlBus within the check deadline; apply runs cannot reach it.'),
      ],
    }],
  },
}
