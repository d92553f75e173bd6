{{/*
The operator's RBAC rules, one set per mechanism. rbac.yaml binds them: in
cluster mode (watchNamespaces empty) as ClusterRoles, in namespaced mode the
namespaced rules as a Role in each watched namespace. Every verb is one the
code calls; see manifests/rbac.yaml for the call behind each rule.
*/}}

{{/* Reading GrpcTargets, Services and EndpointSlices; writing status, ConfigMaps and Events. */}}
{{- define "kuberesolver.rules.core" -}}
# Its own resources: watched (kopf; the xDS feed lists them); only their status
# is written (merge patch). The webhook reads them from its own watch (list, watch).
- apiGroups: [kuberesolver.io]
  resources: [grpctargets]
  verbs: [list, watch]
- apiGroups: [kuberesolver.io]
  resources: [grpctargets/status]
  verbs: [patch]
# What it resolves: read only (Services one by one, slices by label).
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
# What it publishes: get, then create or replace (conditional); no list, no delete.
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, create, update]
# Events on GrpcTargets, and the webhook's InjectionSkipped Events (about a skipped
# Pod's owner, in the Pod's namespace: the webhook sees watched namespaces only).
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end }}

{{/* kopf notices CRD changes: the only cluster-scoped read the operator needs. */}}
{{- define "kuberesolver.rules.crds" -}}
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
{{- end }}

{{/* webhook.tls.mode=self: the leader patches the CA bundle into this one configuration. */}}
{{- define "kuberesolver.rules.webhookConfiguration" -}}
- apiGroups: [admissionregistration.k8s.io]
  resources: [mutatingwebhookconfigurations]
  resourceNames: [{{ include "kuberesolver.webhookConfiguration" . }}]
  verbs: [get, patch]
{{- end }}

{{/* webhook.tls.mode=self: the one Secret the leader creates and rotates (create cannot be limited by name). */}}
{{- define "kuberesolver.rules.webhookSecret" -}}
- apiGroups: [""]
  resources: [secrets]
  verbs: [create]
- apiGroups: [""]
  resources: [secrets]
  resourceNames: [{{ include "kuberesolver.webhookSecret" . }}]
  verbs: [get, update]
{{- end }}

{{/* Namespaced mode with webhook.namespaceSelector: the webhook may admit Pods outside the
watched namespaces (it leaves them unchanged), and its InjectionSkipped Event goes into the Pod's namespace. */}}
{{- define "kuberesolver.rules.webhookEvents" -}}
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end }}

{{/* xds.podReadiness: the xDS feed's Pod watch (readiness before the slice says it). */}}
{{- define "kuberesolver.rules.xdsPods" -}}
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch]
{{- end }}

{{/* xds.auth=token: who presents a token, and may it get the target's ConfigMap. */}}
{{- define "kuberesolver.rules.xdsTokenAuth" -}}
- apiGroups: [authentication.k8s.io]
  resources: [tokenreviews]
  verbs: [create]
- apiGroups: [authorization.k8s.io]
  resources: [subjectaccessreviews]
  verbs: [create]
{{- end }}

{{/* Leader election: one Lease in the operator's namespace. */}}
{{- define "kuberesolver.rules.leader" -}}
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [create]
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  resourceNames: [{{ include "kuberesolver.operator" . }}]
  verbs: [get, update]
{{- end }}

{{/*
A Role or ClusterRole and its binding to the operator's ServiceAccount.
Call: include "kuberesolver.grant" (dict "context" $ "kind" "Role" "name" N "namespace" NS "rules" RULES)
(namespace is ignored for ClusterRoles).
*/}}
{{- define "kuberesolver.grant" -}}
{{- $ := .context -}}
{{- $cluster := eq .kind "ClusterRole" -}}
apiVersion: rbac.authorization.k8s.io/v1
kind: {{ .kind }}
metadata:
  name: {{ .name }}
  {{- if not $cluster }}
  namespace: {{ .namespace }}
  {{- end }}
  labels:
    {{- include "kuberesolver.labels" $ | nindent 4 }}
rules:
  {{- .rules | nindent 2 }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: {{ ternary "ClusterRoleBinding" "RoleBinding" $cluster }}
metadata:
  name: {{ .name }}
  {{- if not $cluster }}
  namespace: {{ .namespace }}
  {{- end }}
  labels:
    {{- include "kuberesolver.labels" $ | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: {{ .kind }}
  name: {{ .name }}
subjects:
  - kind: ServiceAccount
    name: {{ include "kuberesolver.serviceAccountName" $ }}
    namespace: {{ $.Release.Namespace }}
{{- end }}
