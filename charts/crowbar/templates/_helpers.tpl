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
{{- /*
Where a pod may run and how it pulls its image: imagePullSecrets (chart-wide), and the component's
nodeSelector, tolerations and affinity. Call with (dict "root" $ "values" .Values.<component>).
*/}}
{{- define "crowbar.podPlacement" -}}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.nodeSelector }}
nodeSelector: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity: {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
{{- define "crowbar.apiTlsSecret" -}}
{{- default (printf "%s-api-tls" (include "crowbar.fullname" .)) .Values.api.tlsSecret -}}
{{- end -}}

{{- define "crowbar.metricsTlsSecret" -}}
{{- default (printf "%s-metrics-tls" (include "crowbar.fullname" .)) .Values.metrics.tlsSecret -}}
{{- end -}}
