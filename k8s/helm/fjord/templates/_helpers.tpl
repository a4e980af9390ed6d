{{/* Names and labels. */}}
{{- define "fjord.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "fjord.headless" -}}
{{- printf "%s-headless" (include "fjord.fullname" .) -}}
{{- end -}}

{{- define "fjord.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "fjord.labels" -}}
{{ include "fjord.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Voter and pod counts, refusing an even quorum. */}}
{{- define "fjord.voters" -}}
{{- $r := int .Values.replicas -}}
{{- if not (has $r (list 1 3 5 7)) -}}
{{- fail (printf "replicas must be 1, 3, 5 or 7 (got %d): the Raft voters need an odd count, and an even one tolerates no more failures than one fewer. Add brokers with `learners` instead." $r) -}}
{{- end -}}
{{- $r -}}
{{- end -}}

{{- define "fjord.pods" -}}
{{- add (include "fjord.voters" . | int) (int .Values.learners) -}}
{{- end -}}

{{/* The stable DNS name of pod N. */}}
{{- define "fjord.podHost" -}}
{{- $ := index . 0 -}}
{{- printf "%s-%d.%s.%s.svc.%s" (include "fjord.fullname" $) (index . 1) (include "fjord.headless" $) $.Release.Namespace $.Values.clusterDomain -}}
{{- end -}}

{{/* controller.quorum.voters: ID@pod-dns:rpc-port of every voter pod. */}}
{{- define "fjord.voterList" -}}
{{- $out := list -}}
{{- range $i := until (include "fjord.voters" . | int) -}}
{{- $out = append $out (printf "%d@%s:%d" $i (include "fjord.podHost" (list $ $i)) (int $.Values.ports.rpc)) -}}
{{- end -}}
{{- join "," $out -}}
{{- end -}}

{{/* The external address of pod N (host:port). */}}
{{- define "fjord.externalAddress" -}}
{{- $ := index . 0 -}}
{{- $i := index . 1 -}}
{{- $e := $.Values.externalAccess -}}
{{- if eq $e.type "NodePort" -}}
{{- if not $e.nodePort.host -}}
{{- fail "externalAccess.nodePort.host is required: the address clients use to reach the nodes" -}}
{{- end -}}
{{- printf "%s:%d" $e.nodePort.host (add (int $e.nodePort.basePort) $i) -}}
{{- else if eq $e.type "LoadBalancer" -}}
{{- if lt (len $e.loadBalancer.addresses) (add $i 1) -}}
{{- fail (printf "externalAccess.loadBalancer.addresses needs one address per pod (%d pods)" (include "fjord.pods" $ | int)) -}}
{{- end -}}
{{- printf "%s:%d" (index $e.loadBalancer.addresses $i) (int $.Values.ports.external) -}}
{{- else -}}
{{- fail "externalAccess.type must be NodePort or LoadBalancer" -}}
{{- end -}}
{{- end -}}

{{/* The Kafka listeners' security protocol, from tls.enabled and sasl.enabled. */}}
{{- define "fjord.protocol" -}}
{{- if and .Values.tls.enabled .Values.sasl.enabled -}}SASL_SSL
{{- else if .Values.tls.enabled -}}SSL
{{- else if .Values.sasl.enabled -}}SASL_PLAINTEXT
{{- else -}}PLAINTEXT
{{- end -}}
{{- end -}}
