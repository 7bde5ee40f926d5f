{{/* Name prefix: fullnameOverride, else "<release>-qmtl" ("<release>" when it already
     says qmtl), a DNS-1123 label short enough for "-worldservice-tokens". */}}
{{- define "qmtl.fullname" -}}
{{- $name := .Values.fullnameOverride -}}
{{- if not $name -}}
{{- $name = ternary .Release.Name (printf "%s-qmtl" .Release.Name) (contains "qmtl" .Release.Name) -}}
{{- end -}}
{{- regexReplaceAll "[^a-z0-9-]" (lower $name) "-" | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/* The three services, in the order they start (a Gateway needs the other two). */}}
{{- define "qmtl.services" -}}
dagmanager worldservice gateway
{{- end -}}

{{/* HTTP port of a service (health, metrics, API): (dict "root" $ "service" "gateway"). */}}
{{- define "qmtl.httpPort" -}}
{{- $v := index .root.Values .service -}}
{{- if eq .service "dagmanager" }}{{ $v.httpPort }}{{ else }}{{ $v.port }}{{ end -}}
{{- end -}}

{{- define "qmtl.labels" -}}
app.kubernetes.io/name: qmtl
app.kubernetes.io/instance: {{ .Release.Name | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service | quote }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | quote }}
{{- range $key, $value := .Values.commonLabels }}
{{ $key }}: {{ $value | toString | quote }}
{{- end }}
{{- end -}}

{{/* Labels that select one service's pods: (dict "root" $ "service" "gateway"). */}}
{{- define "qmtl.selectorLabels" -}}
app.kubernetes.io/name: qmtl
app.kubernetes.io/instance: {{ .root.Release.Name | quote }}
app.kubernetes.io/component: {{ .service }}
{{- end -}}

{{- define "qmtl.tokensSecret" -}}
{{- .Values.tokens.existingSecret | default (printf "%s-tokens" (include "qmtl.fullname" .)) -}}
{{- end -}}

{{- define "qmtl.dsnSecret" -}}
{{- .Values.postgresql.existingSecret | default (printf "%s-postgresql" (include "qmtl.fullname" .)) -}}
{{- end -}}

{{- define "qmtl.usesPostgres" -}}
{{- if or .Values.postgresql.existingSecret .Values.postgresql.dagmanagerDsn .Values.postgresql.gatewayDsn .Values.postgresql.worldserviceDsn }}true{{ end -}}
{{- end -}}

{{/* qmtl.yml as the chart writes it, before .Values.config is merged over it. Each
     service listens on every pod address and is reached through its Service. */}}
{{- define "qmtl.config" -}}
{{- $fullname := include "qmtl.fullname" . -}}
{{- $v := .Values -}}
{{- $dm := printf "%s-dagmanager" $fullname -}}
{{- $ws := printf "%s-worldservice" $fullname -}}
{{- $gw := printf "%s-gateway" $fullname -}}
{{- $config := dict
  "dagmanager" (dict
    "host" "0.0.0.0" "http_port" $v.dagmanager.httpPort "grpc_port" $v.dagmanager.grpcPort
    "graph_store" "sqlite:/var/lib/qmtl/dagmanager.db"
    "advertise_url" (printf "http://%s:%v" $dm $v.dagmanager.httpPort))
  "worldservice" (dict
    "host" "0.0.0.0" "port" $v.worldservice.port "store" "sqlite:/var/lib/qmtl/worldservice.db"
    "advertise_url" (printf "http://%s:%v" $ws $v.worldservice.port)
    "guard_allowed_sources" $v.worldservice.guardAllowedSources)
  "gateway" (dict
    "host" "0.0.0.0" "port" $v.gateway.port "submission_log" "sqlite:/var/lib/qmtl/gateway.db"
    "dagmanager_grpc" (printf "%s:%v" $dm $v.dagmanager.grpcPort)
    "advertise_url" (printf "http://%s:%v" $gw $v.gateway.port))
  "controlbus" (dict "backend" "http" "url" (printf "http://%s:%v" $ws $v.worldservice.port))
-}}
{{- if $v.worldservice.prometheusUrl -}}
{{- $_ := set $config.worldservice "prometheus_url" $v.worldservice.prometheusUrl -}}
{{- /* This release's series only: another release's jobs have the same names. */ -}}
{{- $_ := set $config.worldservice "prometheus_selector" (printf "job=~\"qmtl-dagmanager|qmtl-gateway|qmtl-worldservice|qmtl-sdk\",namespace=\"%s\"" .Release.Namespace) -}}
{{- end -}}
{{- if $v.kafka.brokers -}}
{{- $_ := set $config.dagmanager "queue_backend" "kafka" -}}
{{- $_ := set $config.dagmanager "kafka_brokers" $v.kafka.brokers -}}
{{- if $v.kafka.controlbus -}}
{{- $_ := set $config "controlbus" (dict "backend" "kafka" "brokers" $v.kafka.brokers "topic" $v.kafka.controlbusTopic) -}}
{{- end -}}
{{- end -}}
{{- mergeOverwrite $config (deepCopy $v.config) | toYaml -}}
{{- end -}}

{{/* Stop rendering when the values describe a deployment that cannot work; each
     message names the value and the fix. */}}
{{- define "qmtl.validate" -}}
{{- $v := .Values -}}
{{- if not $v.tokens.existingSecret -}}
{{- range $key := list "dagmanagerAdmin" "gatewayAdmin" "gatewaySubmit" "worldserviceAdmin" "controlbus" -}}
{{- if not (index $v.tokens $key) -}}
{{- fail (printf "tokens.%s is empty: the services listen beyond loopback and refuse to start without their tokens; set tokens.%s (e.g. --set tokens.%s=$(openssl rand -hex 24)) or tokens.existingSecret" $key $key $key) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $dsns := list $v.postgresql.dagmanagerDsn $v.postgresql.gatewayDsn $v.postgresql.worldserviceDsn | compact -}}
{{- if and (not $v.postgresql.existingSecret) $dsns (lt (len $dsns) 3) -}}
{{- fail "postgresql: give all three of dagmanagerDsn, gatewayDsn and worldserviceDsn (or postgresql.existingSecret); one service on PostgreSQL and another on SQLite do not share state" -}}
{{- end -}}
{{- range $service := splitList " " (include "qmtl.services" .) -}}
{{- $replicas := int (index $v $service).replicas -}}
{{- if gt $replicas 1 -}}
{{- if not (include "qmtl.usesPostgres" $) -}}
{{- fail (printf "%s.replicas is %d: replicas share their state in PostgreSQL; set postgresql.*Dsn or postgresql.existingSecret, or use 1 replica" $service $replicas) -}}
{{- end -}}
{{- if not $v.kafka.brokers -}}
{{- fail (printf "%s.replicas is %d: replicas share queues and the ControlBus on Kafka; set kafka.brokers, or use 1 replica" $service $replicas) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and (gt (int $v.worldservice.replicas) 1) (not $v.kafka.controlbus) -}}
{{- fail "worldservice.replicas > 1 needs kafka.controlbus: true (each WorldService would otherwise host its own ControlBus log)" -}}
{{- end -}}
{{- if and (gt (int $v.dagmanager.replicas) 1) (not $v.worldservice.prometheusUrl) -}}
{{- fail "dagmanager.replicas > 1 needs worldservice.prometheusUrl: the promotion guard must see every replica's cross_context_cache_hit_total, which only Prometheus has" -}}
{{- end -}}
{{- if and $v.persistence.enabled (include "qmtl.usesPostgres" .) -}}
{{- fail "persistence.enabled keeps SQLite on volumes; with PostgreSQL there is nothing to keep: set persistence.enabled=false" -}}
{{- end -}}
{{- end -}}
