{{/*
Expand the name of the chart.
*/}}
{{- define "kuberl.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Create a default fully qualified app name.
We truncate at 63 chars because some Kubernetes name fields are limited to this (by the DNS naming spec).
If release name contains chart name it will be used as a full name.
*/}}
{{- define "kuberl.fullname" -}}
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

{{/*
Create chart name and version as used by the chart label.
*/}}
{{- define "kuberl.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The app.kubernetes.io/part-of value of everything kuberl runs: the chart's objects, and the
operator's children (KUBERL_PART_OF). The NetworkPolicies select on it, so it is not a value.
*/}}
{{- define "kuberl.partOf" -}}
kuberl
{{- end }}

{{/*
Common labels
*/}}
{{- define "kuberl.labels" -}}
helm.sh/chart: {{ include "kuberl.chart" . }}
{{ include "kuberl.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: {{ include "kuberl.partOf" . }}
{{- end }}

{{/*
Selector labels (immutable in a Deployment: only the name and the instance).
*/}}
{{- define "kuberl.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kuberl.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels of one role's objects. Call with (dict "ctx" $ "component" "policy").
*/}}
{{- define "kuberl.componentLabels" -}}
{{ include "kuberl.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
Selector labels of one role's pods. Call with (dict "ctx" $ "component" "policy").
*/}}
{{- define "kuberl.componentSelectorLabels" -}}
{{ include "kuberl.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
The one image: repository:tag, the tag defaulting to the appVersion. The operator hands the
same string to the Deployments it creates (KUBERL_IMAGE).
*/}}
{{- define "kuberl.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/*
Names of the per-role objects.
*/}}
{{- define "kuberl.operator.serviceAccountName" -}}
{{- printf "%s-operator" (include "kuberl.fullname" .) }}
{{- end }}

{{- define "kuberl.experiment.serviceAccountName" -}}
{{- printf "%s-experiment" (include "kuberl.fullname" .) }}
{{- end }}

{{- define "kuberl.mysql.fullname" -}}
{{- printf "%s-mysql" (include "kuberl.fullname" .) }}
{{- end }}

{{/*
A role's Service as seen from any namespace: NAME.NAMESPACE.svc.DOMAIN:PORT.
Call with (dict "ctx" $ "component" "policy" "port" 50056).
*/}}
{{- define "kuberl.serviceAddress" -}}
{{- printf "%s-%s.%s.svc.%s:%v" (include "kuberl.fullname" .ctx) .component .ctx.Release.Namespace .ctx.Values.clusterDomain .port }}
{{- end }}

{{/*
The analytics database: "mysql" (bundled or external) or "sqlite"; fails on a combination that
would leave analytics without a database or deploy one nobody uses.
*/}}
{{- define "kuberl.analytics.databaseUrl" -}}
{{- if eq .Values.analytics.database "sqlite" }}
{{- if or .Values.mysql.enabled .Values.externalDatabase.url }}
{{- fail "analytics.database=sqlite needs mysql.enabled=false and no externalDatabase.url" }}
{{- end }}
{{- print "sqlite:////var/lib/kuberl/analytics.db" }}
{{- else if .Values.mysql.enabled }}
{{- if .Values.externalDatabase.url }}
{{- fail "externalDatabase.url is set but mysql.enabled=true: set mysql.enabled=false to use the external database" }}
{{- end }}
{{- /* The bundled MariaDB serves plaintext inside the namespace, behind its NetworkPolicy. */}}
{{- printf "mysql://%s@%s:3306/%s?tls=off" .Values.mysql.auth.username (include "kuberl.mysql.fullname" .) .Values.mysql.auth.database }}
{{- else if .Values.externalDatabase.url }}
{{- .Values.externalDatabase.url }}
{{- else }}
{{- fail "mysql.enabled=false needs externalDatabase.url (mysql://USER@HOST:PORT/DATABASE) or analytics.database=sqlite" }}
{{- end }}
{{- end }}

{{/*
The Secret and key analytics reads the database password from; empty when there is none.
*/}}
{{- define "kuberl.analytics.passwordSecret" -}}
{{- if eq .Values.analytics.database "mysql" }}
{{- if .Values.mysql.enabled }}
{{- .Values.mysql.auth.existingSecret | default (include "kuberl.mysql.fullname" .) }}
{{- else }}
{{- .Values.externalDatabase.existingSecret }}
{{- end }}
{{- end }}
{{- end }}

{{- define "kuberl.analytics.passwordKey" -}}
{{- if .Values.mysql.enabled }}
{{- print "mariadb-password" }}
{{- else }}
{{- .Values.externalDatabase.passwordKey }}
{{- end }}
{{- end }}

{{/*
Pod-level settings shared by every pod of the chart.
*/}}
{{- define "kuberl.podScheduling" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
Readiness and liveness probes of a gRPC role: the standard gRPC health service on its port.
Call with the port number. Readiness is probed every 3 s, as on the operator's children: a
replica that restarts or rolls gets its traffic back seconds after it listens, not at the next
10 s tick (a health check on the pod's own port costs next to nothing).
*/}}
{{- define "kuberl.grpcProbes" -}}
readinessProbe:
  grpc:
    port: {{ . }}
  initialDelaySeconds: 1
  periodSeconds: 3
  timeoutSeconds: 5
livenessProbe:
  grpc:
    port: {{ . }}
  initialDelaySeconds: 10
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 6
{{- end }}

{{/*
A NetworkPolicyPeer list entry: kuberl pods (part-of=kuberl) of the given components (all when
none are given), in the peer namespaces (anyNamespace) or in the release namespace.
*/}}
{{- define "kuberl.networkPolicy.peer" -}}
{{- $namespaces := .ctx.Values.networkPolicy.peerNamespaceSelector -}}
- {{- if .anyNamespace }}
  namespaceSelector: {{- if $namespaces }}{{ toYaml $namespaces | nindent 4 }}{{ else }} {}{{ end }}
  {{- end }}
  podSelector:
    matchLabels:
      app.kubernetes.io/part-of: {{ include "kuberl.partOf" .ctx }}
    {{- with .components }}
    matchExpressions:
      - key: app.kubernetes.io/component
        operator: In
        values: {{ toJson . }}
    {{- end }}
{{- end }}

{{/*
Prometheus metrics (kuberl serve --metrics-port): the env var that turns them on, the
container port and the Service port, each empty when metrics.enabled is false.
*/}}
{{- define "kuberl.metricsEnv" -}}
{{- if .Values.metrics.enabled }}
- name: KUBERL_METRICS_PORT
  value: {{ .Values.metrics.port | quote }}
{{- end }}
{{- end }}

{{- define "kuberl.metricsContainerPort" -}}
{{- if .Values.metrics.enabled }}
- name: metrics
  containerPort: {{ .Values.metrics.port }}
  protocol: TCP
{{- end }}
{{- end }}

{{- define "kuberl.metricsServicePort" -}}
{{- if .Values.metrics.enabled }}
- name: metrics
  port: {{ .Values.metrics.port }}
  targetPort: metrics
  protocol: TCP
{{- end }}
{{- end }}

{{/*
The ingress rule that lets Prometheus scrape /metrics (read-only figures): from
networkPolicy.metricsFrom, or from anywhere when that is empty. Empty when metrics are off.
*/}}
{{- define "kuberl.networkPolicy.metricsIngress" -}}
{{- if .Values.metrics.enabled }}
- ports:
    - port: {{ .Values.metrics.port }}
      protocol: TCP
  {{- with .Values.networkPolicy.metricsFrom }}
  from:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
{{- end }}
