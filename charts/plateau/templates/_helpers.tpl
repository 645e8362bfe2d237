{{/* Names and labels. nameOverride replaces the chart's name; fullnameOverride the whole name. */}}
{{- define "plateau.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "plateau.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "plateau.selectorLabels" -}}
app.kubernetes.io/name: {{ include "plateau.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "plateau.labels" -}}
{{ include "plateau.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Whether the PodDisruptionBudget renders: podDisruptionBudget.enabled, or "auto" and replicas > 1. */}}
{{- define "plateau.pdbEnabled" -}}
{{- $enabled := .Values.podDisruptionBudget.enabled -}}
{{- if or (eq (toString $enabled) "true") (and (eq (toString $enabled) "auto") (gt (int .Values.replicas) 1)) -}}true{{- end -}}
{{- end -}}

{{- /* Never the namespace's "default" ServiceAccount: the ClusterRole would go to every pod that names none. */}}
{{- define "plateau.serviceAccountName" -}}
{{- default (include "plateau.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "plateau.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "plateau.sidecarImage" -}}
{{- printf "%s:%s" .Values.sidecar.image.repository (.Values.sidecar.image.tag | default .Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* The Service (and so the ServiceMonitor's `job` label) of the operator's metrics. */}}
{{- define "plateau.metricsService" -}}
{{- printf "%s-metrics" (include "plateau.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The `job` label of the sidecars' series, set by the PodMonitor. */}}
{{- define "plateau.sidecarJob" -}}plateau-sidecar{{- end -}}

{{/* dcgm-exporter's label names: the scheme's, unless overridden. */}}
{{- define "plateau.dcgmPodLabel" -}}
{{- default .Values.dcgm.labelScheme .Values.dcgm.podLabel -}}
{{- end -}}
{{- define "plateau.dcgmNamespaceLabel" -}}
{{- default (ternary "exported_namespace" "namespace" (eq .Values.dcgm.labelScheme "exported_pod")) .Values.dcgm.namespaceLabel -}}
{{- end -}}

{{/*
Every permission the operator uses: exactly operator/plateau/controller/rbac.py's RULES (tests compare
the rendered sets). Granted cluster-wide or in each watched namespace.
*/}}
{{- define "plateau.rules" -}}
# watch TrainingJobs (kopf), write their status (the evaluation loop)
- apiGroups: [plateau.dev]
  resources: [trainingjobs]
  verbs: [list, watch]
- apiGroups: [plateau.dev]
  resources: [trainingjobs/status]
  verbs: [patch]
# child Jobs: watch (kopf), create from the template, read and suspend/resume
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create, patch]
# the stop request: an annotation on the trainer pods
- apiGroups: [""]
  resources: [pods]
  verbs: [list, patch]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
# workloadRef kinds: suspend where the kind has it, else /scale
- apiGroups: [jobset.x-k8s.io]
  resources: [jobsets]
  verbs: [get, patch]
- apiGroups: [kubeflow.org]
  resources: [pytorchjobs, tfjobs, mpijobs, xgboostjobs, paddlejobs, jaxjobs]
  verbs: [get, patch]
# read only: patching them would let the account rewrite pod templates (any image, any account)
- apiGroups: [apps]
  resources: [deployments, statefulsets]
  verbs: [get]
- apiGroups: [apps]
  resources: [deployments/scale, statefulsets/scale]
  verbs: [get, patch]
# Kueue-queued workloads: a stop deactivates their Workload (spec.active), or Kueue restarts them
- apiGroups: [kueue.x-k8s.io]
  resources: [workloads]
  verbs: [list, patch]
{{- end -}}

{{/* LEASE_RULES: the leader-election Lease, in the release namespace only. */}}
{{- define "plateau.leaseRules" -}}
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [get, create, update]
{{- end -}}

{{/* A ClusterRole or Role with these rules, and its binding to the operator's ServiceAccount. */}}
{{- define "plateau.grant" -}}
apiVersion: rbac.authorization.k8s.io/v1
kind: {{ .kind }}
metadata:
  name: {{ .name }}
  {{- with .namespace }}
  namespace: {{ . }}
  {{- end }}
  labels:
    {{- include "plateau.labels" .root | nindent 4 }}
rules:
  {{- .rules | nindent 2 }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: {{ .kind }}Binding
metadata:
  name: {{ .name }}
  {{- with .namespace }}
  namespace: {{ . }}
  {{- end }}
  labels:
    {{- include "plateau.labels" .root | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: {{ .kind }}
  name: {{ .name }}
subjects:
  - kind: ServiceAccount
    name: {{ include "plateau.serviceAccountName" .root }}
    namespace: {{ .root.Release.Namespace }}
{{- end -}}
