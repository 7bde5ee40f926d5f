// Minimal Grafana (schema 39) builders: a datasource variable so the JSON imports
// into any Grafana, and timeseries/stat panels laid out on a 24-column grid.
{
  datasource:: { type: 'prometheus', uid: '${datasource}' },

  // Grafana asks Prometheus for exemplars (trace ids) of this target's histogram buckets.
  exemplars:: { exemplar: true },

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

  dashboard(uid, title, panels, tags=['qmtl'])::
    {
      uid: uid,
      title: title,
      tags: tags,
      editable: true,
      schemaVersion: 39,
      version: 1,
      refresh: '30s',
      time: { from: 'now-6h', to: 'now' },
      timezone: 'utc',
      templating: {
        list: [{
          name: 'datasource',
          label: 'Prometheus',
          type: 'datasource',
          query: 'prometheus',
          current: {},
          hide: 0,
        }, {
          // Replicas: every process is its own target; pick one or several, or all.
          name: 'instance',
          label: 'Instance',
          type: 'query',
          datasource: $.datasource,
          query: { query: 'label_values(up{job=~"qmtl-.*"}, instance)', refId: 'instance' },
          definition: 'label_values(up{job=~"qmtl-.*"}, instance)',
          refresh: 2,
          includeAll: true,
          multi: true,
          allValue: '.*',
          current: { text: 'All', value: '$__all' },
          hide: 0,
        }],
      },
      annotations: { list: [] },
      panels: [
        panels[i] + {
          id: i + 1,
          gridPos: { h: 8, w: 12, x: (i % 2) * 12, y: std.floor(i / 2) * 8 },
        }
        for i in std.range(0, std.length(panels) - 1)
      ],
    },
}
