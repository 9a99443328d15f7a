{{- define "hbrbot.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "hbrbot.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "hbrbot.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "hbrbot.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "hbrbot.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hbrbot.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "hbrbot.labels" -}}
{{ include "hbrbot.selectorLabels" . }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The port of HBRBOT_HTTP_ADDR (default 8080). */}}
{{- define "hbrbot.httpPort" -}}
{{- $addr := .Values.config.HBRBOT_HTTP_ADDR | default ":8080" | toString }}
{{- splitList ":" $addr | last | default "8080" }}
{{- end }}
