{{/* Refuses an upgrade of a running release that would break it. The chart cannot see
     inside the cluster's quorum, so it reads what it can (the live StatefulSet and
     ConfigMap, with `lookup`) and asks for a confirmation, in `confirm`, for the changes
     that need a step first:
     - fewer pods: the departing brokers must be drained first (k8s/scale.sh does that),
       or the replicas they hold are lost;
     - another voter count: the quorum must be changed first with `fjord cluster
       add-voter`/`remove-voter`; a pod listed as a voter that the quorum does not know
       never joins it.
     A confirmation is the StatefulSet's current metadata.generation, which the error
     message prints: the upgrade bumps it, so one confirmation is good for one change.
     `lookup` finds nothing under `helm template` and client-side dry runs, so those
     render without these checks. */}}
{{- define "fjord.checkUpgrade" -}}
{{- $name := include "fjord.fullname" . -}}
{{- $sts := lookup "apps/v1" "StatefulSet" .Release.Namespace $name -}}
{{- if $sts -}}
{{- $gen := toString (dig "metadata" "generation" "" $sts) -}}
{{- $current := int (dig "spec" "replicas" 1 $sts) -}}
{{- $wanted := int .Values.replicas -}}
{{- $voters := include "fjord.voters" . | int -}}
{{- $ns := .Release.Namespace -}}
{{- if lt $wanted $current -}}
{{- if ne (toString .Values.confirm.drained) $gen -}}
{{- $ids := list -}}
{{- $pods := list -}}
{{- range $i := untilStep $wanted $current 1 -}}
{{- $ids = append $ids (toString $i) -}}
{{- $pods = append $pods (printf "%s-%d" $name $i) -}}
{{- end -}}
{{- fail (printf "\n\nRefusing to remove pods %s (replicas %d -> %d) before brokers %s are drained: the partition replicas they hold would be lost.\nRun `k8s/scale.sh %s %s %d`: it drains them, checks that no replica is left on them, then upgrades with the confirmation.\nIf you drained them yourself (`fjord cluster drain ID --wait` for each, then checked `fjord cluster status`), add --set confirm.drained=%s (the StatefulSet's current generation; it confirms this one change).\n" (join ", " $pods) $current $wanted (join ", " $ids) .Release.Name $ns $wanted $gen) -}}
{{- end -}}
{{- end -}}
{{- $cm := lookup "v1" "ConfigMap" .Release.Namespace $name -}}
{{- $line := regexFind "controller\\.quorum\\.voters = \"[^\"]*\"" (dig "data" "fjord.toml" "" $cm) -}}
{{- if $line -}}
{{- $old := trimSuffix "\"" (trimPrefix "controller.quorum.voters = \"" $line) -}}
{{- $new := include "fjord.voterList" . -}}
{{- $before := len (splitList "," $old) -}}
{{- if not (or (hasPrefix $old $new) (hasPrefix $new $old)) -}}
{{- fail (printf "\n\nRefusing to change the voters' addresses from %s to %s: the quorum keeps the addresses its members joined with, so a new release name, namespace, clusterDomain or rpc port cannot be applied to a running cluster.\n" $old $new) -}}
{{- else if ne $before $voters -}}
{{- if gt $voters $current -}}
{{- fail (printf "\n\nRefusing voters=%d: only %d pods exist. Add the pods first (helm upgrade --reuse-values --set replicas=%d: they join as learners), promote them with `fjord cluster add-voter`, then set voters (see the README's Kubernetes runbooks).\n" $voters $current $voters) -}}
{{- end -}}
{{- if ne (toString .Values.confirm.voters) $gen -}}
{{- $how := "" -}}
{{- if gt $voters $before -}}
{{- $steps := list -}}
{{- range $i := untilStep $before $voters 1 -}}
{{- $force := "" -}}
{{- if eq (mod (add $i 1) 2) 0 -}}{{- $force = " --force" -}}{{- end -}}
{{- $steps = append $steps (printf "kubectl -n %s exec %s-0 -- fjord cluster add-voter %d%s --admin-server 127.0.0.1:%d" $ns $name $i $force (int $.Values.ports.admin)) -}}
{{- end -}}
{{- $how = printf "promote pods %d..%d first, one at a time (the even count on the way needs --force):\n  %s" $before (sub $voters 1) (join "\n  " $steps) -}}
{{- else -}}
{{- $steps := list -}}
{{- range $j := until (int (sub $before $voters)) -}}
{{- $i := sub (sub $before 1) $j -}}
{{- $force := "" -}}
{{- if eq (mod $i 2) 0 -}}{{- $force = " --force" -}}{{- end -}}
{{- $steps = append $steps (printf "kubectl -n %s exec %s-0 -- fjord cluster remove-voter %d%s --admin-server 127.0.0.1:%d" $ns $name $i $force (int $.Values.ports.admin)) -}}
{{- end -}}
{{- $how = printf "demote pods %d..%d first, highest first (the even count on the way needs --force):\n  %s" $voters (sub $before 1) (join "\n  " $steps) -}}
{{- end -}}
{{- fail (printf "\n\nRefusing to change the voters from %d to %d without a confirmation: the chart cannot see the quorum, and a pod listed as a voter that the quorum does not know never joins it. %s\nCheck with `kubectl -n %s exec %s-0 -- fjord cluster status --admin-server 127.0.0.1:%d` that the quorum has %d voters, then add --set confirm.voters=%s (the StatefulSet's current generation; it confirms this one change).\n" $before $voters $how $ns $name (int .Values.ports.admin) $voters $gen) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
