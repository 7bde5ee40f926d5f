{{/* Resource-name prefix: fullnameOverride or the release name, as a DNS-1123 label. */}}
{{- define "sv2.fullname" -}}
{{- $raw := default .Release.Name .Values.fullnameOverride -}}
{{- regexReplaceAll "[^a-z0-9-]" (lower $raw) "-" | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{- define "sv2.namespace" -}}
{{- default .Release.Namespace .Values.namespace -}}
{{- end -}}

{{/* ConfigMap name of one dashboard: <fullname>-<file name without .json>. */}}
{{- define "sv2.dashboardName" -}}
{{- $stem := regexReplaceAll "[^a-z0-9-]" (lower (trimSuffix ".json" .name)) "-" -}}
{{- printf "%s-%s" .fullname $stem | trimSuffix "-" -}}
{{- end -}}

{{- define "sv2.labels" -}}
app.kubernetes.io/name: seamless-v2-observability
app.kubernetes.io/instance: {{ .Release.Name | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service | quote }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "_" "-" | quote }}
{{- range $key, $value := .Values.commonLabels }}
{{ $key }}: {{ $value | toString | quote }}
{{- end }}
{{- end -}}
