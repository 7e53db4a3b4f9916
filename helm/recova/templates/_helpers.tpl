{{- define "recova.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "recova.fullname" -}}
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

{{- define "recova.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "recova.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "recova.selectorLabels" -}}
app.kubernetes.io/name: {{ include "recova.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "recova.image" -}}
{{ printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end -}}

{{- define "recova.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "recova.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding SECRET_KEY and RECOVA_DATA_KEY. */}}
{{- define "recova.keysSecretName" -}}
{{- default (include "recova.fullname" .) .Values.secret.existingSecret -}}
{{- end -}}

{{/* Whether the chart's own Secret is rendered (keys or URLs given inline, or generated). */}}
{{- define "recova.ownSecret" -}}
{{- if or (not .Values.secret.existingSecret) .Values.postgresql.url .Values.redis.url -}}true{{- end -}}
{{- end -}}

{{/* Non-secret settings, shared by the ConfigMap and the migration Job. */}}
{{- define "recova.config" -}}
RECOVA_ENV: {{ .Values.config.environment | quote }}
RECOVA_LOG_LEVEL: {{ .Values.config.logLevel | quote }}
RECOVA_LOG_FORMAT: {{ .Values.config.logFormat | quote }}
RECOVA_DB_POOL_SIZE: {{ .Values.config.dbPoolSize | quote }}
RECOVA_DB_MAX_OVERFLOW: {{ .Values.config.dbMaxOverflow | quote }}
RECOVA_ACCESS_TOKEN_TTL: {{ .Values.config.accessTokenTtl | quote }}
RECOVA_HOME: "/tmp/recova"
HOME: "/tmp"
PYTHONDONTWRITEBYTECODE: "1"
{{- range $name, $value := .Values.config.extra }}
{{ $name }}: {{ $value | quote }}
{{- end }}
{{- end -}}

{{/* Secret environment: keys, DATABASE_URL and REDIS_URL from whichever Secret holds them. */}}
{{- define "recova.secretEnv" -}}
- name: SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "recova.keysSecretName" . }}
      key: SECRET_KEY
- name: RECOVA_DATA_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "recova.keysSecretName" . }}
      key: RECOVA_DATA_KEY
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      {{- if .Values.postgresql.existingSecret }}
      name: {{ .Values.postgresql.existingSecret }}
      key: {{ .Values.postgresql.existingSecretKey }}
      {{- else }}
      name: {{ include "recova.fullname" . }}
      key: DATABASE_URL
      {{- if not .Values.postgresql.url }}
      optional: true  # not configured: the app stops, naming DATABASE_URL
      {{- end }}
      {{- end }}
- name: REDIS_URL
  valueFrom:
    secretKeyRef:
      {{- if .Values.redis.existingSecret }}
      name: {{ .Values.redis.existingSecret }}
      key: {{ .Values.redis.existingSecretKey }}
      {{- else }}
      name: {{ include "recova.fullname" . }}
      key: REDIS_URL
      {{- if not .Values.redis.url }}
      optional: true  # not configured: the app stops, naming REDIS_URL
      {{- end }}
      {{- end }}
{{- end -}}

{{- define "recova.podSpecCommon" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
volumes:
  - name: tmp
    emptyDir:
      sizeLimit: {{ .Values.tmpVolume.sizeLimit }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "recova.containerCommon" -}}
image: {{ include "recova.image" . }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
securityContext:
  {{- toYaml .Values.securityContext | nindent 2 }}
volumeMounts:
  - name: tmp
    mountPath: /tmp
{{- end -}}

{{- define "recova.podAnnotations" -}}
checksum/config: {{ include "recova.config" . | sha256sum }}
{{- with .Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end -}}
