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

{{/* Voter and pod counts. The first `voters` pods are the Raft quorum (an odd count); the
     other pods of the `replicas` join as learners: brokers that do not vote. */}}
{{- define "fjord.voters" -}}
{{- if and (hasKey .Values "learners") .Values.learners -}}
{{- fail (printf "`learners` is gone: `replicas` is now the number of pods and `voters` the size of the quorum (the first pods). Set replicas=%d voters=%v learners=0 for the same pods." (add (int .Values.replicas) (int .Values.learners)) .Values.replicas) -}}
{{- end -}}
{{- if kindIs "invalid" .Values.voters -}}
{{- fail "voters is not set. It is the number of Raft voters (the first pods), a separate value from replicas (the number of pods). A release made by an older chart: upgrade with --reset-then-reuse-values, or --set voters=N with its current number of voters." -}}
{{- end -}}
{{- $v := int .Values.voters -}}
{{- if not (has $v (list 1 3 5 7)) -}}
{{- fail (printf "voters must be 1, 3, 5 or 7 (got %d): the Raft quorum needs an odd count, and an even one tolerates no more failures than one fewer. Add brokers with `replicas` instead: pods beyond the voters join as learners." $v) -}}
{{- end -}}
{{- if lt (int .Values.replicas) $v -}}
{{- fail (printf "replicas (%d, the number of pods) must be at least voters (%d): the first `voters` pods are the Raft quorum. To remove voter pods, demote them first (fjord cluster remove-voter, then voters=N; see the README's Kubernetes runbooks)." (int .Values.replicas) $v) -}}
{{- end -}}
{{- $v -}}
{{- end -}}

{{- define "fjord.pods" -}}
{{- $_ := include "fjord.voters" . -}}
{{- int .Values.replicas -}}
{{- end -}}

{{/* The stable DNS name of pod N. */}}
{{- define "fjord.podHost" -}}
{{- $ := index . 0 -}}
{{- printf "%s-%d.%s.%s.svc.%s" (include "fjord.fullname" $) (index . 1) (include "fjord.headless" $) $.Release.Namespace $.Values.clusterDomain -}}
{{- end -}}

{{/* The rpc address pod N advertises (rpc.advertised.listener): its stable DNS name and
     the rpc port. Every pod needs it: without it a learner would advertise its bare
     hostname, which other pods cannot resolve. */}}
{{- define "fjord.rpcAddress" -}}
{{- $ := index . 0 -}}
{{- printf "%s:%d" (include "fjord.podHost" .) (int $.Values.ports.rpc) -}}
{{- end -}}

{{/* controller.quorum.voters: ID@pod-dns:rpc-port of every voter pod. */}}
{{- define "fjord.voterList" -}}
{{- $out := list -}}
{{- range $i := until (include "fjord.voters" . | int) -}}
{{- $out = append $out (printf "%d@%s" $i (include "fjord.rpcAddress" (list $ $i))) -}}
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
