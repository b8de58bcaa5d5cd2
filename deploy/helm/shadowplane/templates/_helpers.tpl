{{/* Cluster-scoped objects carry the namespace, so installs in two namespaces do not collide. */}}
{{- define "shadowplane.clusterName" -}}
shadowplane-{{ .Release.Namespace }}
{{- end -}}

{{- define "shadowplane.labels" -}}
app.kubernetes.io/name: shadowplane
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Values.image.tag | quote }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{- define "shadowplane.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag }}
{{- end -}}

{{/* The restricted container securityContext every shadowplane container runs with. */}}
{{- define "shadowplane.containerSecurity" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities: {drop: [ALL]}
seccompProfile: {type: RuntimeDefault}
{{- end -}}

{{- define "shadowplane.podSecurity" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
seccompProfile: {type: RuntimeDefault}
{{- end -}}

{{/* The rules the control plane's informers, Events and identity checks use, per namespace or cluster-wide. */}}
{{- define "shadowplane.watchRules" -}}
# Secrets: the TLS Secrets labelled shadowplane.io/mirror-tls that https
# mirrors name (label selector server-side; RBAC cannot narrow by label).
- apiGroups: [""]
  resources: [services, configmaps, secrets]
  verbs: [list, watch]
# The leader patches the status and last-valid annotations of policy
# ConfigMaps (a merge patch of those two only).
- apiGroups: [""]
  resources: [configmaps]
  verbs: [patch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
- apiGroups: [""]
  resources: [pods, services]
  verbs: [get]
{{- if .Values.webhooks.enabled }}
# With the webhooks, serve lists pods to find those that ask for the sidecar
# and run without it (created while the webhook was away), for an Event.
- apiGroups: [""]
  resources: [pods]
  verbs: [list]
{{- end }}
{{- end -}}

{{- define "shadowplane.certgenPod" -}}
metadata:
  labels: {app.kubernetes.io/name: shadowplane-certgen}
spec:
  serviceAccountName: shadowplane-certgen
  restartPolicy: OnFailure
  securityContext: {{- include "shadowplane.podSecurity" . | nindent 4 }}
  containers:
  - name: certgen
    image: {{ include "shadowplane.image" . }}
    imagePullPolicy: {{ .Values.image.pullPolicy }}
    args: [certgen]
    env:
    - name: POD_NAMESPACE
      valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
    resources:
      requests: {cpu: 10m, memory: 32Mi}
      limits: {memory: 64Mi}
    securityContext: {{- include "shadowplane.containerSecurity" . | nindent 6 }}
{{- end -}}
