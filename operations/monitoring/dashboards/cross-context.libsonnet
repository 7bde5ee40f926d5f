local g = import '../lib/grafana.libsonnet';

{
  grafanaDashboards+:: {
    local c = $._config,
    local f = g.filter(c),
    'qmtl-cross-context.json': g.dashboard(c, 'qmtl-cross-context', 'QMTL / Cross-context cache hits (SLO 0)', c.qmtlSelector, [
      g.stat('Cross-context hits (must be 0)', [['sum(cross_context_cache_hit_total{%s}) or vector(0)' % f, 'hits']]),
      g.timeseries('Offending contexts', [['cross_context_cache_hit_total{%s}' % f, '{{node_id}} world={{world_id}} domain={{execution_domain}} as_of={{as_of}} partition={{partition}}']]),
    ]),
  },
}
