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

{{/* The dashboards to ship, as JSON {"items": [{configMap, file, json}]}: the defaults,
     then grafanaDashboards.extraDashboards.  An extra dashboard whose ConfigMap name is a
     default's replaces that default (same place in the list); two extra dashboards with
     one ConfigMap name, an entry without a name or uid, and a `json` that is not a JSON
     object written as a string stop the rendering with the entry's position. */}}
{{- define "sv2.dashboards" -}}
{{- $fullname := include "sv2.fullname" . -}}
{{- $order := list -}}
{{- $byName := dict -}}
{{- range $source := list "dashboards" "extraDashboards" -}}
{{- $seen := dict -}}
{{- range $i, $entry := (index $.Values.grafanaDashboards $source | default list) -}}
{{- $where := printf "grafanaDashboards.%s[%d]" $source $i -}}
{{- if not (kindIs "map" $entry) -}}
{{- fail (printf "%s: each entry is a mapping {name, json} or {uid, title, json}" $where) -}}
{{- end -}}
{{- $name := $entry.name | default "" -}}
{{- if and (not $name) $entry.uid -}}
{{- $name = printf "%s.json" $entry.uid -}}
{{- end -}}
{{- if not $name -}}
{{- fail (printf "%s: needs `name` (file name) or `uid`, and `json` (dashboard JSON as a string)" $where) -}}
{{- end -}}
{{- if not (kindIs "string" $entry.json) -}}
{{- fail (printf "%s (%s): `json` must be the dashboard JSON as a string (write `json: |` and the JSON below it), not %s" $where $name (kindOf $entry.json)) -}}
{{- end -}}
{{- $parsed := fromJson $entry.json -}}
{{- if hasKey $parsed "Error" -}}
{{- fail (printf "%s (%s): `json` is not a JSON object: %s" $where $name $parsed.Error) -}}
{{- end -}}
{{- $cm := include "sv2.dashboardName" (dict "fullname" $fullname "name" $name) -}}
{{- if hasKey $seen $cm -}}
{{- fail (printf "%s (%s): another entry of grafanaDashboards.%s already makes ConfigMap %s; give each dashboard its own name" $where $name $source $cm) -}}
{{- end -}}
{{- $_ := set $seen $cm true -}}
{{- if not (hasKey $byName $cm) -}}
{{- $order = append $order $cm -}}
{{- end -}}
{{- $_ := set $byName $cm (dict "configMap" $cm "file" $name "json" $entry.json) -}}
{{- end -}}
{{- end -}}
{{- $items := list -}}
{{- range $cm := $order -}}
{{- $items = append $items (get $byName $cm) -}}
{{- end -}}
{{- dict "items" $items | toJson -}}
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
