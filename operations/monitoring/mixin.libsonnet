// The QMTL monitoring mixin: config + alerts + recording rules + dashboards.
(import 'config.libsonnet') +
(import 'alerts/dagmanager.libsonnet') +
(import 'alerts/gateway.libsonnet') +
(import 'alerts/sdk.libsonnet') +
(import 'alerts/worldservice.libsonnet') +
(import 'rules.libsonnet') +
(import 'slos.libsonnet') +
(import 'dashboards/dashboards.libsonnet')
