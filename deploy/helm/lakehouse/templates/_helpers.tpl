{{/* Chart name. */}}
{{- define "lakehouse.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/*
Prefix of every resource name. 40 characters at most: the StatefulSet's pods add "-catalog-N"
and its controller-revision-hash label adds a hash, and both must stay within 63.
*/}}
{{- define "lakehouse.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "lakehouse.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every resource; call with (dict "ctx" $ "component" "catalog"). */}}
{{- define "lakehouse.labels" -}}
helm.sh/chart: {{ include "lakehouse.chart" .ctx }}
{{ include "lakehouse.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: lakehouse
{{- end -}}

{{- define "lakehouse.selectorLabels" -}}
app.kubernetes.io/name: {{ include "lakehouse.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "lakehouse.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Name of the catalog's StatefulSet and of its headless Service (they must match for pod DNS). */}}
{{- define "lakehouse.catalogName" -}}
{{- printf "%s-catalog" (include "lakehouse.fullname" .) -}}
{{- end -}}

{{/* The catalog nodes as ID=HOST:3102, comma-separated; node id = pod ordinal + 1. */}}
{{- define "lakehouse.catalogPeers" -}}
{{- $name := include "lakehouse.catalogName" . -}}
{{- $peers := list -}}
{{- range $i := until (int .Values.catalog.replicas) -}}
{{- $peers = append $peers (printf "%d=%s-%d.%s.%s.svc.%s:3102" (add1 $i) $name $i $name $.Release.Namespace $.Values.clusterDomain) -}}
{{- end -}}
{{- join "," $peers -}}
{{- end -}}

{{/* A TOML key: bare when it can be, else a quoted string. */}}
{{- define "lakehouse.tomlKey" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . -}}{{ . }}{{- else -}}{{ toJson . }}{{- end -}}
{{- end -}}

{{/*
One TOML table and, after it, its sub-tables; call with (dict "path" "a.b" "table" $map).
Scalars and lists are written as JSON, which is valid TOML for strings (JSON's escapes are TOML's),
integers, booleans and arrays of those.
*/}}
{{- define "lakehouse.tomlTable" -}}
{{- $path := .path -}}
{{- $scalars := 0 -}}
{{- range $value := .table }}{{ if not (kindIs "map" $value) }}{{ $scalars = add1 $scalars }}{{ end }}{{ end -}}
{{- /* A table holding only sub-tables needs no header of its own. */ -}}
{{- if or $scalars (empty .table) -}}
[{{ $path }}]
{{- end -}}
{{- range $key, $value := .table }}
{{- if not (kindIs "map" $value) }}
{{ include "lakehouse.tomlKey" $key }} = {{ toJson $value }}
{{- end }}
{{- end }}
{{- range $key, $value := .table }}
{{- if kindIs "map" $value }}

{{ include "lakehouse.tomlTable" (dict "path" (printf "%s.%s" $path (include "lakehouse.tomlKey" $key)) "table" $value) }}
{{- end }}
{{- end }}
{{- end -}}

{{/* The config file; tables holding only sub-tables leave runs of blank lines, squeezed here. */}}
{{- define "lakehouse.toml" -}}
{{- regexReplaceAll "\n{3,}" (include "lakehouse.tomlBody" .) "\n\n" -}}
{{- end -}}

{{- define "lakehouse.tomlBody" -}}
# Rendered by the lakehouse Helm chart from .Values.config; see lakehouse.toml in the
# repository for every key, its default and what it does.
{{- /* What the chart knows fills in what the values leave unset; the values win. */ -}}
{{- $computed := dict
  "catalog" (dict "peers" (splitList "," (include "lakehouse.catalogPeers" .)))
  "scheduler" (dict "endpoint" (printf "%s-scheduler:50050" (include "lakehouse.fullname" .)))
-}}
{{- if .Values.tls.enabled -}}
{{- $_ := set $computed "tls" (dict "cert_path" (printf "/etc/lakehouse/tls/%s" .Values.tls.certKey) "key_path" (printf "/etc/lakehouse/tls/%s" .Values.tls.keyKey)) -}}
{{- end -}}
{{- $config := merge (deepCopy .Values.config) $computed -}}
{{- range $section, $table := $config }}

{{ include "lakehouse.tomlTable" (dict "path" (include "lakehouse.tomlKey" $section) "table" $table) }}
{{- end }}
{{- end -}}

{{/* Pod-level settings shared by every role; call with (dict "ctx" $ "role" .Values.<role>). */}}
{{- define "lakehouse.podSpec" -}}
automountServiceAccountToken: false
securityContext:
  {{- toYaml .ctx.Values.podSecurityContext | nindent 2 }}
{{- with .ctx.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .role.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .role.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .role.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Pod annotations: a config change rolls the pods. */}}
{{- define "lakehouse.podAnnotations" -}}
checksum/config: {{ include "lakehouse.toml" . | sha256sum }}
{{- with .Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Environment of every role: the S3 secret key by reference. */}}
{{- define "lakehouse.storageEnv" -}}
{{- if and .Values.secrets.existingSecret .Values.secrets.s3SecretAccessKeyKey -}}
- name: LAKEHOUSE_S3_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .Values.secrets.existingSecret }}
      key: {{ .Values.secrets.s3SecretAccessKeyKey }}
{{- end }}
{{- end -}}

{{/* The container's common parts: image, security context, the config file. */}}
{{- define "lakehouse.containerBase" -}}
image: {{ include "lakehouse.image" . }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
securityContext:
  {{- toYaml .Values.securityContext | nindent 2 }}
{{- end -}}

{{- define "lakehouse.configVolume" -}}
- name: config
  configMap:
    name: {{ include "lakehouse.fullname" . }}-config
{{- end -}}

{{/*
The config file alone (subPath), so that /etc/lakehouse/tls can be mounted beside it rather than
inside a read-only ConfigMap volume. Pods roll on config changes through checksum/config.
*/}}
{{- define "lakehouse.configMount" -}}
- name: config
  mountPath: /etc/lakehouse/lakehouse.toml
  subPath: lakehouse.toml
  readOnly: true
{{- end -}}
