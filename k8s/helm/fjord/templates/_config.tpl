{{/* The fjord.toml every pod reads: settings shared by all pods, then a [node.N] table
     per pod (what differs per pod: its advertised addresses). Takes (list $ PODS), the
     number of [node.N] tables. */}}
{{- define "fjord.toml" -}}
{{- $ := index . 0 -}}
{{- $pods := index . 1 -}}
{{- with $ -}}
# Rendered by the Fjord Helm chart. Kafka property names; a [node.N] table applies to
# node N only (its advertised Kafka listeners and rpc address).
data.dir = "/var/lib/fjord/data"
{{- $protocol := include "fjord.protocol" . }}
{{- if .Values.externalAccess.enabled }}
listeners = "INTERNAL://0.0.0.0:{{ .Values.ports.kafka }},EXTERNAL://0.0.0.0:{{ .Values.ports.external }}"
listener.security.protocol.map = "INTERNAL:{{ $protocol }},EXTERNAL:{{ $protocol }}"
{{- else }}
listeners = "INTERNAL://0.0.0.0:{{ .Values.ports.kafka }}"
listener.security.protocol.map = "INTERNAL:{{ $protocol }}"
{{- end }}
{{- if .Values.tls.enabled }}
{{- if not .Values.tls.secretName }}
{{- fail "tls.enabled needs tls.secretName: a Secret with the pods' keystore and CA" }}
{{- end }}
ssl.keystore.type = "PEM"
ssl.keystore.location = "/etc/fjord-tls/keystore.pem"
ssl.client.auth = {{ .Values.tls.clientAuth | quote }}
{{- if ne .Values.tls.clientAuth "none" }}
ssl.truststore.type = "PEM"
ssl.truststore.location = "/etc/fjord-tls/ca.pem"
{{- end }}
rpc.ssl.keystore.location = "/etc/fjord-tls/keystore.pem"
rpc.ssl.truststore.location = "/etc/fjord-tls/ca.pem"
{{- end }}
{{- if .Values.sasl.enabled }}
{{- if not (or .Values.sasl.usersSecret (hasKey .Values.config "sasl.jaas.config")) }}
{{- fail "sasl.enabled needs sasl.usersSecret: the first users (an admin), who then create SCRAM users" }}
{{- end }}
sasl.enabled.mechanisms = {{ join "," .Values.sasl.mechanisms | quote }}
connections.max.reauth.ms = "{{ int .Values.sasl.reauthMs }}"
{{- if .Values.sasl.usersSecret }}
sasl.users.file = "/etc/fjord-sasl/users"
{{- end }}
{{- end }}
{{- if .Values.authorization.enabled }}
authorizer.class.name = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
super.users = {{ join ";" .Values.authorization.superUsers | quote }}
allow.everyone.if.no.acl.found = "{{ .Values.authorization.allowEveryoneIfNoAclFound }}"
{{- end }}
rpc.listener = "0.0.0.0:{{ .Values.ports.rpc }}"
admin.listener = "0.0.0.0:{{ .Values.ports.admin }}"
controller.quorum.voters = "{{ include "fjord.voterList" . }}"
{{- range $k, $v := .Values.config }}
"{{ $k }}" = {{ $v | toString | quote }}
{{- end }}
{{- end }}
{{- range $i := until $pods }}

[node.{{ $i }}]
{{- if $.Values.externalAccess.enabled }}
advertised.listeners = "INTERNAL://{{ include "fjord.podHost" (list $ $i) }}:{{ $.Values.ports.kafka }},EXTERNAL://{{ include "fjord.externalAddress" (list $ $i) }}"
{{- else }}
advertised.listeners = "INTERNAL://{{ include "fjord.podHost" (list $ $i) }}:{{ $.Values.ports.kafka }}"
{{- end }}
rpc.advertised.listener = "{{ include "fjord.rpcAddress" (list $ $i) }}"
{{- end }}
{{- end -}}

{{/* What a running pod's config depends on, for the pod template's checksum: the shared
     settings and the voters' tables. The tables of pods beyond the voters are left out,
     so adding or removing learner pods restarts no running pod (each pod reads its
     table only when it starts). */}}
{{- define "fjord.configChecksum" -}}
{{- include "fjord.toml" (list . (include "fjord.voters" . | int)) | sha256sum -}}
{{- end -}}
