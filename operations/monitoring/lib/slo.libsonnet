// Multiwindow, multi-burn-rate SLO alerts (Google SRE workbook, chapter 5) from SLO
// objects: each SLO renders an error-ratio recording rule per window, a total-rate rule
// per window (the traffic guard) and one alert with two severities -- page (critical)
// on fast burns, ticket (warning) on slow ones.
//
// An SLO object:
//   { alert: 'GatewayErrorBudgetBurn', area: 'gateway', objective: 0.999,
//     title: 'Submission availability', description: '...',
//     errorQuery: 'sum by (job) (rate(errors[%(window)s]))',   // %(window)s is filled in
//     totalQuery: 'sum by (job) (rate(total[%(window)s]))' }
{
  // Seconds of a Prometheus duration ('5m', '1h', '3d', '30s').
  seconds(d)::
    local units = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 };
    local unit = std.substr(d, std.length(d) - 1, 1);
    assert std.objectHas(units, unit) : 'window %s: use s, m, h, d or w' % d;
    std.parseInt(std.substr(d, 0, std.length(d) - 1)) * units[unit],

  // Every window used by the policy, shortest first.
  windows(policy)::
    std.set(std.flattenArrays([[p.short, p.long] for p in policy.page + policy.ticket]), $.seconds),

  // One line naming the SLO and the field when an object or the policy is wrong.
  check(name, slo, policy)::
    local missing = [f for f in ['alert', 'objective', 'errorQuery', 'totalQuery'] if !std.objectHas(slo, f)];
    assert missing == [] : 'SLO %s: %s: required field missing' % [name, std.join(', ', missing)];
    assert std.isNumber(slo.objective) && slo.objective > 0 && slo.objective < 1 :
           'SLO %s: objective must be within (0, 1) (0.999 is 99.9 %%), got %s' % [name, slo.objective];
    assert std.length(std.findSubstr('%(window)s', slo.errorQuery)) > 0 && std.length(std.findSubstr('%(window)s', slo.totalQuery)) > 0 :
           'SLO %s: errorQuery and totalQuery must contain %%(window)s where the range goes' % name;
    local pairs = policy.page + policy.ticket;
    assert std.all([$.seconds(p.short) < $.seconds(p.long) for p in pairs]) :
           'SLO %s: windows: every short window must be shorter than its long window' % name;
    local longs = [$.seconds(p.long) for p in pairs];
    assert std.all([longs[i] < longs[i + 1] for i in std.range(0, std.length(longs) - 2)]) :
           'SLO %s: windows: the long windows must increase (page fastest, ticket slowest), got %s' % [name, [p.long for p in pairs]];
    true,

  // Recording rules: error ratio and total rate of every window.
  rules(name, slo, policy)::
    assert $.check(name, slo, policy);
    std.flattenArrays([
      [
        {
          record: 'slo:sli_error:ratio_rate%s' % w,
          expr: '(%s)\n/\n(%s)' % [slo.errorQuery % { window: w }, slo.totalQuery % { window: w }],
          labels: { slo: name },
        },
        {
          record: 'slo:sli_total:rate%s' % w,
          expr: slo.totalQuery % { window: w },
          labels: { slo: name },
        },
      ]
      for w in $.windows(policy)
    ]),

  // The alert condition of one severity: any window pair burning faster than its factor,
  // with enough events in the long window to mean anything.
  condition(name, slo, pairs, minEvents)::
    local budget = 1 - slo.objective;
    local sel = '{slo="%s"}' % name;
    std.join('or\n', [
      |||
        (
          slo:sli_error:ratio_rate%(long)s%(sel)s > (%(factor)s * %(budget)s)
          and
          slo:sli_error:ratio_rate%(short)s%(sel)s > (%(factor)s * %(budget)s)
          and on (job, slo)
          slo:sli_total:rate%(long)s%(sel)s * %(seconds)d >= %(min)s
        )
      ||| % {
        long: p.long,
        short: p.short,
        sel: sel,
        factor: '%g' % p.factor,
        budget: '%g' % budget,
        seconds: $.seconds(p.long),
        min: minEvents,
      }
      for p in pairs
    ]),
}
