{{/*
Names, labels and the pieces every workload shares. The four services run from one image, so
most of a Deployment is common; what differs (ports, mounts, environment) is decided here by
component name so the templates stay flat.
*/}}

{{- define "relance.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "relance.fullname" -}}
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

{{- define "relance.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "relance.labels" -}}
helm.sh/chart: {{ include "relance.chart" . }}
app.kubernetes.io/name: {{ include "relance.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: relance
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels of one component's objects: call with (dict "root" $ "component" "sender"). */}}
{{- define "relance.componentLabels" -}}
{{ include "relance.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Selector labels: stable across upgrades, so never the version or chart. */}}
{{- define "relance.selectorLabels" -}}
app.kubernetes.io/name: {{ include "relance.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "relance.componentName" -}}
{{- printf "%s-%s" (include "relance.fullname" .root) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "relance.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "relance.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "relance.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The ops port of each service, as in config/default.toml. */}}
{{- define "relance.opsPort" -}}
{{- get (dict "ingestor" 9101 "scheduler" 9102 "sender" 9103 "tracker" 9104) . }}
{{- end }}

{{/* Whether something other than `replicas` owns the replica count. */}}
{{- define "relance.autoscaled" -}}
{{- $values := index .root.Values .component }}
{{- if or $values.autoscaling.enabled (and (hasKey $values "keda") $values.keda.enabled) }}true{{ end }}
{{- end }}

{{- define "relance.publicBaseUrl" -}}
{{- if .Values.links.publicBaseUrl }}
{{- .Values.links.publicBaseUrl }}
{{- else if and .Values.tracker.ingress.enabled .Values.tracker.ingress.hosts }}
{{- printf "https://%s" (first .Values.tracker.ingress.hosts).host }}
{{- end }}
{{- end }}

{{/* The environment file: config.settings as TOML. Helm reads YAML numbers as floats, so
whole numbers are written back without ".0" for readability (relance accepts either). */}}
{{- define "relance.environmentToml" -}}
{{- if .Values.config.settings }}
{{- regexReplaceAll "(?m)^(\\s*[A-Za-z0-9_\"]+ = -?[0-9]+)\\.0$" (toToml .Values.config.settings) "${1}" }}
{{- else }}
# No settings beyond config/default.toml and the environment variables of the Deployments.
{{- end }}
{{- end }}

{{/* Where each component mounts what. */}}
{{- define "relance.usesPolicies" -}}{{ if has . (list "scheduler" "tracker") }}true{{ end }}{{- end }}
{{/* The sender renders the templates; the scheduler checks approvals edited by people against them. */}}
{{- define "relance.usesTemplates" -}}{{ if has . (list "sender" "scheduler") }}true{{ end }}{{- end }}
{{- define "relance.usesLinkKeys" -}}{{ if has . (list "sender" "tracker") }}true{{ end }}{{- end }}

{{/* Environment variables every relance container gets: hosts, topics and secrets. */}}
{{- define "relance.commonEnv" -}}
{{- $root := .root }}
{{- $v := $root.Values -}}
- name: RELANCE_ENV
  value: {{ $v.config.environment | quote }}
- name: RELANCE_CONFIG_DIR
  value: /etc/relance/config
- name: RELANCE__DATABASE__HOST
  value: {{ $v.database.host | quote }}
- name: RELANCE__DATABASE__PORT
  value: {{ $v.database.port | quote }}
- name: RELANCE__DATABASE__DATABASE_NAME
  value: {{ $v.database.name | quote }}
- name: RELANCE__DATABASE__USERNAME
  value: {{ $v.database.username | quote }}
- name: RELANCE__DATABASE__SSL_MODE
  value: {{ $v.database.sslMode | quote }}
- name: RELANCE__DATABASE__PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $v.database.passwordSecret.name }}
      key: {{ $v.database.passwordSecret.key }}
{{- if $v.database.rootCertSecret.name }}
- name: RELANCE__DATABASE__SSL_ROOT_CERT
  value: /etc/relance/database-tls/ca.crt
{{- end }}
- name: RELANCE__DATABASE__MIGRATE_ON_START
  value: {{ (not $v.migrations.enabled) | quote }}
- name: RELANCE__KAFKA__BOOTSTRAP_SERVERS
  value: {{ $v.kafka.bootstrapServers | quote }}
- name: RELANCE__KAFKA__SECURITY_PROTOCOL
  value: {{ $v.kafka.securityProtocol | quote }}
{{- if hasPrefix "sasl_" $v.kafka.securityProtocol }}
- name: RELANCE__KAFKA__SASL_MECHANISM
  value: {{ $v.kafka.sasl.mechanism | quote }}
- name: RELANCE__KAFKA__SASL_USERNAME
  value: {{ $v.kafka.sasl.username | quote }}
- name: RELANCE__KAFKA__SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $v.kafka.sasl.passwordSecret.name }}
      key: {{ $v.kafka.sasl.passwordSecret.key }}
{{- end }}
{{- if $v.kafka.tls.caSecret.name }}
- name: RELANCE__KAFKA__SSL_CA_LOCATION
  value: /etc/relance/kafka-tls/ca.crt
{{- end }}
{{- if $v.kafka.tls.clientCertSecret.name }}
- name: RELANCE__KAFKA__SSL_CERTIFICATE_LOCATION
  value: /etc/relance/kafka-tls/tls.crt
- name: RELANCE__KAFKA__SSL_KEY_LOCATION
  value: /etc/relance/kafka-tls/tls.key
{{- end }}
{{- if $v.kafka.tls.keyPasswordSecret.name }}
- name: RELANCE__KAFKA__SSL_KEY_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $v.kafka.tls.keyPasswordSecret.name }}
      key: {{ $v.kafka.tls.keyPasswordSecret.key }}
{{- end }}
{{- range $name, $topic := $v.kafka.topics }}
- name: RELANCE__KAFKA__TOPICS__{{ upper $name }}
  value: {{ $topic | quote }}
{{- end }}
{{- end }}

{{/* Volumes every relance pod gets: the environment file, /tmp and the broker and database
certificates. */}}
{{- define "relance.commonVolumes" -}}
{{- $root := .root }}
{{- $v := $root.Values -}}
- name: environment
  configMap:
    name: {{ .configMap }}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- if or $v.kafka.tls.caSecret.name $v.kafka.tls.clientCertSecret.name }}
- name: kafka-tls
  projected:
    defaultMode: 0440
    sources:
      {{- with $v.kafka.tls.caSecret.name }}
      - secret:
          name: {{ . }}
          items:
            - key: {{ $v.kafka.tls.caSecret.key }}
              path: ca.crt
      {{- end }}
      {{- with $v.kafka.tls.clientCertSecret.name }}
      - secret:
          name: {{ . }}
          items:
            - key: {{ $v.kafka.tls.clientCertSecret.certKey }}
              path: tls.crt
            - key: {{ $v.kafka.tls.clientCertSecret.keyKey }}
              path: tls.key
      {{- end }}
{{- end }}
{{- with $v.database.rootCertSecret.name }}
- name: database-tls
  secret:
    secretName: {{ . }}
    defaultMode: 0440
    items:
      - key: {{ $v.database.rootCertSecret.key }}
        path: ca.crt
{{- end }}
{{- end }}

{{- define "relance.commonVolumeMounts" -}}
{{- $v := .root.Values -}}
# subPath: only the environment file is replaced; the image's pages stay beside it. A subPath
# mount does not follow ConfigMap updates, which is why the pods carry checksum annotations.
- name: environment
  mountPath: /etc/relance/config/{{ $v.config.environment }}.toml
  subPath: {{ $v.config.environment }}.toml
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- if or $v.kafka.tls.caSecret.name $v.kafka.tls.clientCertSecret.name }}
- name: kafka-tls
  mountPath: /etc/relance/kafka-tls
  readOnly: true
{{- end }}
{{- if $v.database.rootCertSecret.name }}
- name: database-tls
  mountPath: /etc/relance/database-tls
  readOnly: true
{{- end }}
{{- end }}

{{- define "relance.podSecurityContext" -}}
runAsNonRoot: true
{{- with .Values.podSecurityContext.runAsUser }}
runAsUser: {{ . }}
{{- end }}
{{- with .Values.podSecurityContext.runAsGroup }}
runAsGroup: {{ . }}
{{- end }}
{{- with .Values.podSecurityContext.fsGroup }}
fsGroup: {{ . }}
{{- end }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "relance.containerSecurityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Template files by relative path (<set>/<locale>/<file>): the chart's defaults, then
templates.files over them. Rendered as YAML so callers can range over it. */}}
{{- define "relance.templateFiles" -}}
{{- $files := dict }}
{{- if .Values.templates.defaults }}
{{- range $path, $_ := .Files.Glob "files/templates/**" }}
{{- $_ := set $files (trimPrefix "files/templates/" $path) ($.Files.Get $path) }}
{{- end }}
{{- end }}
{{- range $path, $content := .Values.templates.files }}
{{- $_ := set $files $path $content }}
{{- end }}
{{- toYaml $files }}
{{- end }}

{{- define "relance.templateItems" -}}
{{- range $path, $_ := include "relance.templateFiles" . | fromYaml }}
- key: {{ $path | replace "/" "__" }}
  path: {{ $path }}
{{- end }}
{{- end }}
