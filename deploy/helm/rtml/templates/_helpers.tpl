{{/* Names and labels. */}}
{{- define "rtml.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "rtml.fullname" -}}
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

{{- define "rtml.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "rtml.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: rtml
{{- end -}}

{{/* Selector labels of one component: include "rtml.selector" (list $ "gateway") */}}
{{- define "rtml.selector" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "rtml.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "rtml.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "rtml.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "rtml.secretName" -}}
{{- default (printf "%s-secrets" (include "rtml.fullname" .)) .Values.secret.existingSecret -}}
{{- end -}}

{{- define "rtml.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ required "image.tag must be pinned" .Values.image.tag | toString | printf "%s:%s" .Values.image.repository }}
{{- end -}}
{{- end -}}

{{/* A model's worker name: the model name in DNS-label form (iris_classifier -> iris-classifier). */}}
{{- define "rtml.workerName" -}}
{{- $root := index . 0 -}}
{{- printf "%s-worker-%s" (include "rtml.fullname" $root) ((index . 1).name | lower | replace "_" "-" | replace "." "-") | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The rtml settings file: .Values.config plus what the chart derives from .Values.kafka. */}}
{{- define "rtml.config" -}}
{{- $cfg := deepCopy .Values.config -}}
{{- $kafka := deepCopy (default (dict) $cfg.kafka) -}}
{{- $_ := set $kafka "bootstrap_servers" .Values.kafka.bootstrapServers -}}
{{- $security := deepCopy (default (dict) $kafka.security) -}}
{{- if and .Values.kafka.sasl.enabled .Values.kafka.tls.enabled -}}
{{- $_ := set $security "security.protocol" "SASL_SSL" -}}
{{- else if .Values.kafka.sasl.enabled -}}
{{- $_ := set $security "security.protocol" "SASL_PLAINTEXT" -}}
{{- else if .Values.kafka.tls.enabled -}}
{{- $_ := set $security "security.protocol" "SSL" -}}
{{- end -}}
{{- if .Values.kafka.sasl.enabled -}}
{{- $_ := set $security "sasl.mechanism" .Values.kafka.sasl.mechanism -}}
{{- end -}}
{{- if and .Values.kafka.tls.enabled .Values.kafka.tls.caSecret -}}
{{- $_ := set $security "ssl.ca.location" (printf "/etc/rtml/kafka-ca/%s" .Values.kafka.tls.caKey) -}}
{{- end -}}
{{- if $security -}}
{{- $_ := set $kafka "security" $security -}}
{{- end -}}
{{- $_ := set $cfg "kafka" $kafka -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/* What the processes drain on SIGTERM, in seconds (mirrors runtime/settings.py). */}}
{{- define "rtml.gatewayDrainSeconds" -}}
{{- $gw := default (dict) .Values.config.gateway -}}
{{- if hasKey $gw "drain_s" -}}{{ $gw.drain_s }}{{- else if eq (toString .Values.config.env) "production" -}}5{{- else -}}0{{- end -}}
{{- end -}}

{{- define "rtml.gatewayGraceSeconds" -}}
{{- if .Values.gateway.terminationGracePeriodSeconds -}}
{{ .Values.gateway.terminationGracePeriodSeconds }}
{{- else -}}
{{- $gw := default (dict) .Values.config.gateway -}}
{{- $maxTimeoutS := divf (default 60000 $gw.max_timeout_ms) 1000 -}}
{{- $drain := include "rtml.gatewayDrainSeconds" . | float64 -}}
{{- addf .Values.gateway.preStopSleepSeconds $drain $maxTimeoutS .Values.gateway.terminationGraceMarginSeconds | ceil | int -}}
{{- end -}}
{{- end -}}

{{- define "rtml.workerGraceSeconds" -}}
{{- if .Values.worker.terminationGracePeriodSeconds -}}
{{ .Values.worker.terminationGracePeriodSeconds }}
{{- else -}}
{{- $kafka := default (dict) .Values.config.kafka -}}
{{- $deliveryS := divf (default 30000 $kafka.delivery_timeout_ms) 1000 -}}
{{- addf $deliveryS 5 .Values.worker.terminationGraceMarginSeconds | ceil | int -}}
{{- end -}}
{{- end -}}

{{- define "rtml.podSecurity" -}}
{{- with .Values.podSecurityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
serviceAccountName: {{ include "rtml.serviceAccountName" . }}
automountServiceAccountToken: false
{{- end -}}

{{/* Checksums of the config and secret: a change rolls every Deployment. */}}
{{- define "rtml.checksums" -}}
checksum/config: {{ include "rtml.config" . | sha256sum }}
{{- if not .Values.secret.existingSecret }}
checksum/secret: {{ toJson .Values.secret.values | sha256sum }}
{{- end }}
{{- end -}}

{{/* Environment shared by every rtml container. */}}
{{- define "rtml.env" -}}
- name: RTML_CONFIG
  value: /etc/rtml/config/rtml.yaml
- name: RTML_REGISTRY__ROOT
  value: /var/lib/rtml/models
- name: RTML_INFRA__STATE_DIR
  value: /var/lib/rtml/state
- name: RTML_REDIS__URL
  valueFrom:
    secretKeyRef:
      name: {{ include "rtml.secretName" . }}
      key: redis-url
{{- if .Values.kafka.sasl.enabled }}
- name: RTML_KAFKA__SECURITY__SASL.USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ include "rtml.secretName" . }}
      key: kafka-sasl-username
- name: RTML_KAFKA__SECURITY__SASL.PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "rtml.secretName" . }}
      key: kafka-sasl-password
{{- end }}
{{- end -}}

{{- define "rtml.volumeMounts" -}}
- name: config
  mountPath: /etc/rtml/config
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- if and .Values.kafka.tls.enabled .Values.kafka.tls.caSecret }}
- name: kafka-ca
  mountPath: /etc/rtml/kafka-ca
  readOnly: true
{{- end }}
{{- end -}}

{{- define "rtml.volumes" -}}
- name: config
  configMap:
    name: {{ include "rtml.fullname" . }}-config
- name: tmp
  emptyDir:
    sizeLimit: 256Mi
{{- if and .Values.kafka.tls.enabled .Values.kafka.tls.caSecret }}
- name: kafka-ca
  secret:
    secretName: {{ .Values.kafka.tls.caSecret }}
{{- end }}
{{- end -}}
