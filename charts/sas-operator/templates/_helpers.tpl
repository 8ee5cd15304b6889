{{/* The chart's name: app.kubernetes.io/name of every object, and part of the selector. */}}
{{- define "sas-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The name of the release's objects: the release name if it already names the chart (release
`sas-operator` gives the same names as deploy/), else release-chart.
*/}}
{{- define "sas-operator.fullname" -}}
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

{{/* Labels of every object: deploy/'s two, then Helm's own. */}}
{{- define "sas-operator.labels" -}}
app.kubernetes.io/name: {{ include "sas-operator.name" . }}
app.kubernetes.io/part-of: sas-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The operator's pods, as deploy/ selects them. A selector is immutable, so it holds no
release-specific label: switching between deploy/ and the chart keeps the Deployment.
*/}}
{{- define "sas-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sas-operator.name" . }}
app.kubernetes.io/component: controller
{{- end }}

{{- define "sas-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sas-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The leader-election Lease; the operator's own default when leaderElection.leaseName is empty. */}}
{{- define "sas-operator.leaseName" -}}
{{- default "sas-operator" .Values.leaderElection.leaseName }}
{{- end }}

{{- define "sas-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}
