{{/* Labels on every object: the kustomize base's, plus Helm's own. */}}
{{- define "kuberesolver.labels" -}}
app.kubernetes.io/name: kuberesolver-operator
app.kubernetes.io/part-of: kuberesolver
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{- define "kuberesolver.selector" -}}
app.kubernetes.io/name: kuberesolver-operator
{{- end }}

{{- define "kuberesolver.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}
