// Minimal Grafana (schema 39) builders in the style of kubernetes-mixin's dashboards:
// datasource, job and instance variables (cluster when the config asks for it), links
// between the QMTL dashboards, panels laid out on a 24-column grid.
{
  datasource:: { type: 'prometheus', uid: '${datasource}' },

  // Grafana asks Prometheus for exemplars (trace ids) of this target's histogram buckets.
  exemplars:: { exemplar: true },

  // The label matchers every panel query carries: the dashboard's variables.
  filter(config)::
    (if config.showMultiCluster then '%s=~"$cluster",' % config.clusterLabel else '')
    + 'job=~"$job",instance=~"$instance"',

  target(expr, legend='')::
    { datasource: $.datasource, expr: expr, legendFormat: legend, refId: 'A', range: true },

  panel(kind, title, exprs, unit, description)::
    {
      type: kind,
      title: title,
      description: description,
      datasource: $.datasource,
      fieldConfig: { defaults: { unit: unit }, overrides: [] },
      options: {},
      // An entry is [expr, legend] or [expr, legend, extra target fields] (e.g. $.exemplars).
      targets: [
        $.target(e[0], e[1]) + (if std.length(e) > 2 then e[2] else {}) + { refId: std.char(65 + i) }
        for i in std.range(0, std.length(exprs) - 1)
        for e in [exprs[i]]
      ],
    },

  timeseries(title, exprs, unit='short', description='')::
    $.panel('timeseries', title, exprs, unit, description),

  stat(title, exprs, unit='short', description='')::
    $.panel('stat', title, exprs, unit, description),

  local variable(name, label, query, selector) = {
    name: name,
    label: label,
    type: 'query',
    datasource: $.datasource,
    query: { query: query, refId: name },
    // Grafana's own field for the query text; its schema types it (the query editor
    // reads it back), so it is written out too.
    definition: query,
    refresh: 2,
    includeAll: true,
    multi: true,
    allValue: '.+',
    current: { selected: true, text: ['All'], value: ['$__all'] },
    hide: 0,
    sort: 1,
  },

  // Annotations from a PromQL query (e.g. apply runs): one per series step where it is > 0.
  // The query sits in `target`, where Grafana keeps it (older dashboards had the
  // Prometheus fields at the top level; Grafana moves them there when it loads them).
  annotation(name, expr, title, text='', color='blue')::
    {
      name: name,
      datasource: $.datasource,
      enable: true,
      hide: false,
      iconColor: color,
      target: {
        refId: 'Anno',
        expr: expr,
        interval: '60s',
        titleFormat: title,
        textFormat: text,
        useValueForTime: false,
      },
    },

  // ``selector`` picks the jobs of this dashboard's component (a _config selector).
  dashboard(config, uid, title, selector, panels, annotations=[])::
    local cluster = if config.showMultiCluster then [
      variable('cluster', 'Cluster', 'label_values(up{%s}, %s)' % [selector, config.clusterLabel], selector),
    ] else [];
    local clusterFilter = if config.showMultiCluster then ',%s=~"$cluster"' % config.clusterLabel else '';
    {
      uid: uid,
      title: title,
      tags: ['qmtl'],
      editable: true,
      schemaVersion: 39,
      version: 1,
      refresh: '30s',
      time: { from: 'now-6h', to: 'now' },
      timezone: 'utc',
      links: [{
        title: 'QMTL dashboards',
        type: 'dashboards',
        tags: ['qmtl'],
        asDropdown: true,
        includeVars: true,
        keepTime: true,
        icon: 'external link',
        targetBlank: false,
        tooltip: '',
        url: '',
      }],
      templating: {
        list: [{
          name: 'datasource',
          label: 'Prometheus',
          type: 'datasource',
          query: 'prometheus',
          current: { selected: false, text: 'default', value: 'default' },
          hide: 0,
        }] + cluster + [
          variable('job', 'Job', 'label_values(up{%s%s}, job)' % [selector, clusterFilter], selector),
          // Replicas: every process is its own target; pick one or several, or all.
          variable('instance', 'Instance', 'label_values(up{%s%s,job=~"$job"}, instance)' % [selector, clusterFilter], selector),
        ],
      },
      annotations: {
        list: [{
          // Grafana's own alert and annotation events, as every dashboard has them.
          builtIn: 1,
          datasource: { type: 'grafana', uid: '-- Grafana --' },
          enable: true,
          hide: true,
          iconColor: 'rgba(0, 211, 255, 1)',
          name: 'Annotations & Alerts',
          type: 'dashboard',
        }] + annotations,
      },
      panels: [
        panels[i] {
          id: i + 1,
          gridPos: { h: 8, w: 12, x: (i % 2) * 12, y: std.floor(i / 2) * 8 },
        }
        for i in std.range(0, std.length(panels) - 1)
      ],
    },
}
