// The QMTL monitoring mixin: config + alerts + recording rules + dashboards.
(import 'config.libsonnet') +
(import 'alerts/dagmanager.libsonnet') +
(import 'alerts/gateway.libsonnet') +
(import 'alerts/sdk.libsonnet') +
(import 'alerts/worldservice.libsonnet') +
(import 'alerts/dependencies.libsonnet') +
(import 'alerts/meta.libsonnet') +
(import 'rules.libsonnet') +
(import 'slos.libsonnet') +
(import 'dashboards/queues-gc.libsonnet') +
(import 'dashboards/dagmanager-diff.libsonnet') +
(import 'dashboards/gateway.libsonnet') +
(import 'dashboards/sdk-nodes.libsonnet') +
(import 'dashboards/backfill.libsonnet') +
(import 'dashboards/worldservice-apply.libsonnet') +
(import 'dashboards/cross-context.libsonnet') +
(import 'dashboards/slo.libsonnet')
