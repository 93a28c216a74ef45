{{/* The chart's name. */}}
{{- define "akidb-candle.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The name of every object: the release name, unless it already carries the chart's. */}}
{{- define "akidb-candle.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Labels that select the pods; never change them on upgrade. */}}
{{- define "akidb-candle.selectorLabels" -}}
app.kubernetes.io/name: {{ include "akidb-candle.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "akidb-candle.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "akidb-candle.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: embedding
app.kubernetes.io/part-of: akidb
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "akidb-candle.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "akidb-candle.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image reference: a digest wins over the tag. */}}
{{- define "akidb-candle.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default (printf "v%s" .Chart.AppVersion) .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The PersistentVolumeClaim that holds the models. */}}
{{- define "akidb-candle.modelsClaim" -}}
{{- default (printf "%s-models" (include "akidb-candle.fullname" .)) .Values.models.pvc.existingClaim }}
{{- end }}

{{/* Long enough for the preStop pause, the service's drain and a margin to exit. */}}
{{- define "akidb-candle.terminationGrace" -}}
{{- add .Values.preStopSleepSeconds .Values.config.server.shutdownGraceSeconds 5 }}
{{- end }}

{{/* Every container: no privilege, no capabilities, nothing written outside its volumes. */}}
{{- define "akidb-candle.containerSecurityContext" -}}
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}
