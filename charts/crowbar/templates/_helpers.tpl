{{- define "crowbar.fullname" -}}
{{- printf "%s-operator" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- define "crowbar.serviceAccountName" -}}
{{- default (include "crowbar.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}
{{- define "crowbar.labels" -}}
app.kubernetes.io/name: crowbar
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}
{{- define "crowbar.selector" -}}
app.kubernetes.io/name: crowbar
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}
