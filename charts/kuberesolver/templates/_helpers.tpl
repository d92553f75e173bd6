{{/*
Names. Every object's name starts with "kuberesolver.fullname", so two releases
with different names (or fullnameOverride) never collide; it is cut to 42
characters so that the longest suffix ("-operator-webhook-tls", 21) still fits
in 63.
*/}}
{{- define "kuberesolver.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 42 | trimSuffix "-" -}}
{{- end }}

{{- define "kuberesolver.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 42 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 42 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 42 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end }}

{{/* The operator's objects: Deployment, ServiceAccount, ClusterRole, PDB, Lease... */}}
{{- define "kuberesolver.operator" -}}
{{- printf "%s-operator" (include "kuberesolver.fullname" .) -}}
{{- end }}

{{/* The webhook's Service, its TLS Secret and its MutatingWebhookConfiguration. */}}
{{- define "kuberesolver.webhookService" -}}
{{- printf "%s-webhook" (include "kuberesolver.fullname" .) -}}
{{- end }}
{{- define "kuberesolver.webhookSecret" -}}
{{- printf "%s-webhook-tls" (include "kuberesolver.fullname" .) -}}
{{- end }}
{{- define "kuberesolver.webhookConfiguration" -}}
{{- printf "%s-mounts" (include "kuberesolver.fullname" .) -}}
{{- end }}
{{- define "kuberesolver.xdsService" -}}
{{- printf "%s-xds" (include "kuberesolver.fullname" .) -}}
{{- end }}

{{- define "kuberesolver.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "kuberesolver.operator" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end }}

{{/* Labels on every object: the kustomize base's, plus Helm's own. */}}
{{- define "kuberesolver.labels" -}}
{{ include "kuberesolver.selector" . }}
app.kubernetes.io/part-of: kuberesolver
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{/* The operator's Pods, per release. */}}
{{- define "kuberesolver.selector" -}}
app.kubernetes.io/name: {{ include "kuberesolver.name" . }}-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
An image reference from {registry, repository, tag, digest}: a digest wins over
the tag; the tag defaults to the chart's appVersion.
Call: include "kuberesolver.imageRef" (dict "image" .Values.image "context" $)
*/}}
{{- define "kuberesolver.imageRef" -}}
{{- $image := .image -}}
{{- $repository := $image.repository -}}
{{- if $image.registry -}}
{{- $repository = printf "%s/%s" (trimSuffix "/" $image.registry) $image.repository -}}
{{- end -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository (default .context.Chart.AppVersion $image.tag) -}}
{{- end -}}
{{- end }}

{{/* Whether the operator keeps the webhook's TLS itself (a Secret it writes, a caBundle it patches). */}}
{{- define "kuberesolver.webhookSelfTLS" -}}
{{- if and .Values.webhook.enabled (eq .Values.webhook.tls.mode "self") }}true{{ end -}}
{{- end }}

{{/* Whether the xDS feed watches Pods. */}}
{{- define "kuberesolver.xdsPods" -}}
{{- if and .Values.xds.enabled .Values.xds.podReadiness }}true{{ end -}}
{{- end }}

{{/* Whether the xDS server checks tokens (TokenReview, SubjectAccessReview). */}}
{{- define "kuberesolver.xdsTokenAuth" -}}
{{- if and .Values.xds.enabled (eq .Values.xds.auth "token") }}true{{ end -}}
{{- end }}

{{/* Combinations the schema cannot express, refused with a message that says why. */}}
{{- define "kuberesolver.validate" -}}
{{- if and .Values.xds.enabled (eq .Values.xds.auth "token") (not .Values.xds.certSecret) }}
{{- fail "xds.auth=token needs xds.certSecret: grpc sends call credentials only over TLS" }}
{{- end }}
{{- if and .Values.xds.mutualTLS (not .Values.xds.certSecret) }}
{{- fail "xds.mutualTLS needs xds.certSecret" }}
{{- end }}
{{- if and .Values.webhook.enabled (eq .Values.webhook.failurePolicy "Fail") (lt (int .Values.replicas) 2) }}
{{- fail "webhook.failurePolicy=Fail with one replica blocks every injected Pod while it restarts: set replicas >= 2" }}
{{- end }}
{{- if and .Values.prometheusRule.enabled (not (int .Values.metrics.port)) }}
{{- fail "prometheusRule.enabled needs metrics.port: its alerts read the operator's metrics" }}
{{- end }}
{{- end }}
