{{- define "prefect-server.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "prefect-server.fullname" -}}
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

{{- define "prefect-server.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "prefect-server.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Labels: call with (dict "ctx" $ "component" "server"). */}}
{{- define "prefect-server.labels" -}}
app.kubernetes.io/name: {{ include "prefect-server.name" .ctx }}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version | replace "+" "_" }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/component: {{ .component }}
prefect-version: {{ .ctx.Chart.AppVersion }}
{{- end }}

{{- define "prefect-server.selectorLabels" -}}
app.kubernetes.io/name: {{ include "prefect-server.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "prefect-server.image" -}}
{{- printf "%s:%s" .Values.global.prefect.image.repository .Values.global.prefect.image.prefectTag | quote }}
{{- end }}

{{- define "prefect-server.redisEnabled" -}}
{{- if or .Values.redis.enabled .Values.backgroundServices.messaging.redis.host }}true{{ end }}
{{- end }}

{{/* Combinations the chart cannot render. Included by the server Deployment. */}}
{{- define "prefect-server.validate" -}}
{{- if and .Values.sqlite.enabled .Values.postgresql.enabled }}
{{- fail "sqlite.enabled and postgresql.enabled are mutually exclusive: set postgresql.enabled=false to use SQLite" }}
{{- end }}
{{- if and .Values.sqlite.enabled .Values.backgroundServices.runAsSeparateDeployment }}
{{- fail "sqlite.enabled cannot be combined with backgroundServices.runAsSeparateDeployment: use PostgreSQL" }}
{{- end }}
{{- if and .Values.sqlite.enabled (gt (int .Values.server.replicaCount) 1) }}
{{- fail "sqlite.enabled supports a single server replica (server.replicaCount=1)" }}
{{- end }}
{{- if not (or .Values.sqlite.enabled .Values.postgresql.enabled .Values.externalDatabase.existingSecret) }}
{{- fail "no database: enable postgresql or sqlite, or set externalDatabase.existingSecret (and connectionStringSecretKey)" }}
{{- end }}
{{- if and .Values.backgroundServices.runAsSeparateDeployment (not (include "prefect-server.redisEnabled" .)) }}
{{- fail "backgroundServices.runAsSeparateDeployment needs Redis: set redis.enabled=true or backgroundServices.messaging.redis.host" }}
{{- end }}
{{- end }}

{{/* PREFECT_SERVER_DATABASE_CONNECTION_URL. */}}
{{- define "prefect-server.databaseEnv" -}}
{{- if .Values.sqlite.enabled }}
- name: PREFECT_SERVER_DATABASE_CONNECTION_URL
  value: "sqlite+aiosqlite:////data/prefect.db"
{{- else if .Values.postgresql.enabled }}
- name: PREFECT_SERVER_DATABASE_CONNECTION_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "prefect-server.fullname" . }}-postgresql-connection
      key: connection-string
{{- else }}
- name: PREFECT_SERVER_DATABASE_CONNECTION_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.externalDatabase.existingSecret }}
      key: {{ .Values.externalDatabase.connectionStringSecretKey }}
{{- end }}
{{- end }}

{{/* Redis messaging, event ordering and lease storage (server and background services). */}}
{{- define "prefect-server.redisEnv" -}}
{{- if include "prefect-server.redisEnabled" . }}
{{- $redis := .Values.backgroundServices.messaging.redis }}
- name: PREFECT_MESSAGING_BROKER
  value: prefect_redis.messaging
- name: PREFECT_MESSAGING_CACHE
  value: prefect_redis.messaging
- name: PREFECT_SERVER_EVENTS_CAUSAL_ORDERING
  value: prefect_redis.ordering
- name: PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE
  value: prefect_redis.lease_storage
- name: PREFECT_REDIS_MESSAGING_HOST
  value: {{ $redis.host | default (printf "%s-redis-headless.%s.svc.cluster.local" .Release.Name .Release.Namespace) | quote }}
- name: PREFECT_REDIS_MESSAGING_PORT
  value: {{ $redis.port | quote }}
- name: PREFECT_REDIS_MESSAGING_DB
  value: {{ $redis.db | quote }}
- name: PREFECT_REDIS_MESSAGING_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $redis.existingSecret | default (printf "%s-redis" .Release.Name) }}
      key: redis-password
{{- end }}
{{- end }}
