{{- define "warden.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "warden.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "warden.labels" -}}
{{ include "warden.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* warden.toml, the same for every pod (each names its audit chain by $POD_NAME). */}}
{{- define "warden.toml" -}}
{{- $v := .Values -}}
# Rendered by the Warden Helm chart; edit values.yaml, not this.
[listen]
addr = "0.0.0.0:{{ $v.listen.port }}"
allowed_hosts = [{{ range $i, $h := $v.allowedHosts }}{{ if $i }}, {{ end }}{{ $h | quote }}{{ end }}]
{{- if $v.listen.tls.enabled }}

[listen.tls]
cert_file = "/etc/warden/tls/tls.crt"
key_file = "/etc/warden/tls/tls.key"
{{- else }}
trusted_proxies = [{{ range $i, $p := $v.listen.trustedProxies }}{{ if $i }}, {{ end }}{{ $p | quote }}{{ end }}]
{{- end }}

[auth]
resource = {{ $v.resource | quote }}

[store]
backend = "redis"
url = {{ $v.store.redisUrl | quote }}
on_outage = {{ $v.store.onOutage | quote }}
{{- if $v.secrets.redisPassword.existingSecret }}
password = { file = "/etc/warden/secrets/redis-password" }
{{- end }}

[cluster]
key = { file = "/etc/warden/secrets/cluster-key" }

[audit]
url = {{ $v.audit.postgresUrl | quote }}
password = { file = "/etc/warden/secrets/postgres-password" }
instance = { env = "POD_NAME" }
fsync = {{ $v.audit.fsync | quote }}
{{- if $v.secrets.auditSigningKey.existingSecret }}
signing_key = "/etc/warden/secrets/audit-signing-key"
{{- else }}
signing_key = "/var/lib/warden/warden-audit.key"
{{- end }}
{{- if $v.audit.publicKey }}
{{- if not $v.secrets.auditSigningKey.existingSecret }}
{{- fail "audit.publicKey needs secrets.auditSigningKey: without it every pod makes a key of its own, which the pin refuses" }}
{{- end }}
public_key = {{ $v.audit.publicKey | quote }}
{{- end }}
checkpoint_file = "/var/lib/warden/warden-audit.checkpoints"
{{- if $v.secrets.adminToken.existingSecret }}

[admin]
addr = "127.0.0.1:8932"
token = { file = "/etc/warden/secrets/admin-token" }
state_file = "/var/lib/warden/kill-switches.json"
{{- end }}

[telemetry]
metrics_addr = "0.0.0.0:{{ $v.metrics.port }}"

{{ $v.config }}
{{- end -}}
