{{/* Names and settings of the rollout controller (rollout.enabled). */}}
{{- define "ingot.rolloutName" -}}
{{- printf "%s-rollout" (include "ingot.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* What the controller patches: rollout.trafficMode, else traffic.mode when it is a mesh mode, else ingot. */}}
{{- define "ingot.rolloutMode" -}}
{{- if .Values.rollout.trafficMode }}{{ .Values.rollout.trafficMode }}
{{- else if has .Values.traffic.mode (list "gatewayAPI" "istio") }}{{ .Values.traffic.mode }}
{{- else }}ingot{{ end }}
{{- end }}

{{- define "ingot.rolloutRoutesConfigMap" -}}
{{- default (include "ingot.gatewayRoutesName" .) .Values.rollout.routesConfigMap }}
{{- end }}

{{/*
"true" when the controller owns the live state of an object that holds traffic weights or served
versions: with rollout.enabled, such objects are rendered on install (annotated keep) and left out
on upgrade, so Helm keeps the live object the controller patched instead of resetting it to values.
*/}}
{{- define "ingot.rolloutKeepsLive" -}}
{{- if and .Values.rollout.enabled .Release.IsUpgrade }}true{{ end }}
{{- end }}

{{/* Annotation put on controller-patched objects while rollout.enabled. */}}
{{- define "ingot.rolloutKeepAnnotation" -}}
{{- if .Values.rollout.enabled }}
helm.sh/resource-policy: keep
ingot.dev/patched-by: {{ include "ingot.rolloutName" . }}
{{- end }}
{{- end }}

{{/* The controller's actuator target (JSON in INGOT_ROLLOUT_TARGET). */}}
{{- define "ingot.rolloutTarget" -}}
{{- $champion := include "ingot.variantName" (dict "root" . "variant" "champion") }}
{{- $challenger := include "ingot.variantName" (dict "root" . "variant" "challenger") }}
{{- $championHost := include "ingot.fqdn" (dict "root" . "name" $champion) }}
{{- $challengerHost := include "ingot.fqdn" (dict "root" . "name" $challenger) }}
{{- $rest := .Values.server.restPort }}
{{- $grpc := .Values.server.grpcPort }}
{{- $target := dict
  "actuator" "kubernetes"
  "mode" (include "ingot.rolloutMode" .)
  "namespace" .Release.Namespace
  "release" .Release.Name
  "drain_s" .Values.rollout.drainSeconds
  "routes_configmap" (include "ingot.rolloutRoutesConfigMap" .)
  "httproute" (include "ingot.fullname" .)
  "grpcroute" (include "ingot.fullname" .)
  "virtualservice" (include "ingot.fullname" .)
  "istio_api_version" .Values.traffic.istio.apiVersion
  "champion_service" $champion
  "challenger_service" $challenger
  "champion_host" $championHost
  "challenger_host" $challengerHost
  "caller_header" (.Values.gateway.callerHeader | default "x-ingot-caller")
  "mirror" .Values.gateway.mirrorPercent
  "feedback_token_file" (ternary (printf "%s/%s" (include "ingot.gatewayTokenDir" .) .Values.gateway.feedbackToken.key) "" (not (empty (include "ingot.feedbackTokenSecret" .))))
  "model_configmaps" (dict "champion" (include "ingot.modelConfigName" (dict "root" . "variant" "champion")) "challenger" (include "ingot.modelConfigName" (dict "root" . "variant" "challenger")))
  "champion" (dict "rest" (printf "http://%s:%v" $championHost $rest) "grpc" (printf "%s:%v" $championHost $grpc))
  "challenger" (dict "rest" (printf "http://%s:%v" $challengerHost $rest) "grpc" (printf "%s:%v" $challengerHost $grpc))
}}
{{- /* An arm's cascade goes with it, so every table the controller writes keeps it (ingot.rollout.routing). */}}
{{- range $arm := list "champion" "challenger" }}
{{- with include "ingot.cascadeRoute" (dict "root" $ "arm" $arm) }}
{{- $_ := set (index $target $arm) "cascade" (fromJson .) }}
{{- end }}
{{- /* A small server on the arm's own version moves with the arm (ingot.rollout.kubernetes). */}}
{{- if include "ingot.smallFollowsArm" (dict "root" $ "arm" $arm) }}
{{- $_ := set (index $target $arm) "cascade_follows_version" true }}
{{- $_ := set $target.model_configmaps (printf "%s-small" $arm) (include "ingot.modelConfigName" (dict "root" $ "variant" (printf "%s-small" $arm))) }}
{{- end }}
{{- end }}
{{- /* The table's capture, cache, fallback, deadline and breaker (and previous_champion): the same values the gateway's table renders. */}}
{{- $target = merge $target (include "ingot.gatewayPolicies" . | fromJson) }}
{{- toJson $target }}
{{- end }}

{{- define "ingot.rolloutImage" -}}
{{- $i := .Values.rollout.image }}
{{- printf "%s:%s" $i.repository $i.tag }}{{ if $i.digest }}@{{ $i.digest }}{{ end }}
{{- end }}
