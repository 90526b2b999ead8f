{{/* Ingot's gateway (traffic.mode ingot): names, labels, image, routing table. */}}

{{- define "ingot.gatewayName" -}}
{{- printf "%s-gateway" (include "ingot.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ingot.gatewayRoutesName" -}}
{{- printf "%s-gateway-routes" (include "ingot.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ingot.gatewaySelectorLabels" -}}
app.kubernetes.io/name: {{ include "ingot.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: gateway
{{- end }}

{{- define "ingot.gatewayLabels" -}}
{{ include "ingot.labels" . }}
app.kubernetes.io/component: gateway
{{- end }}

{{- define "ingot.gatewayImage" -}}
{{- $img := .Values.gateway.image }}
{{- $ref := printf "%s:%s" $img.repository $img.tag }}
{{- if $img.digest }}{{ printf "%s@%s" $ref $img.digest }}{{ else }}{{ $ref }}{{ end }}
{{- end }}

{{- define "ingot.gatewayExperiment" -}}
{{- if .Values.gateway.experiment }}
{{- .Values.gateway.experiment }}
{{- else if .Values.challenger.enabled }}
{{- printf "%s-v%v-vs-v%v" .Values.model.name (int64 .Values.challenger.version) (int64 .Values.champion.version) }}
{{- else }}
{{- printf "%s-v%v" .Values.model.name (int64 .Values.champion.version) }}
{{- end }}
{{- end }}

{{/* Where the feedback token Secret is mounted in the gateway pod. */}}
{{- define "ingot.gatewayTokenDir" -}}/var/run/secrets/ingot/feedback{{- end }}

{{/*
The routing table (docs/gateway.md), the shape `ingot gateway --routes` reads: upstreams are the
per-variant Services, each named with the version it serves. The rollout controller rewrites it.
*/}}
{{- define "ingot.gatewayRoutes" -}}
{{- $routes := dict "model" .Values.model.name "experiment" (include "ingot.gatewayExperiment" .) }}
{{- $_ := set $routes "caller_header" (.Values.gateway.callerHeader | default "x-ingot-caller") }}
{{- $_ := set $routes "weights" (dict "challenger" (int .Values.traffic.weights.challenger)) }}
{{- $_ := set $routes "mirror" (ternary .Values.gateway.mirrorPercent 0 .Values.challenger.enabled) }}
{{- $upstreams := dict }}
{{- range $variant := splitList "," (include "ingot.enabledVariants" .) }}
{{- $host := include "ingot.fqdn" (dict "root" $ "name" (include "ingot.variantName" (dict "root" $ "variant" $variant))) }}
{{- $_ := set $upstreams $variant (dict "rest" (printf "http://%s:%v" $host $.Values.server.restPort) "grpc" (printf "%s:%v" $host $.Values.server.grpcPort) "version" (int64 (index $.Values $variant).version)) }}
{{- end }}
{{- $_ := set $routes "upstreams" $upstreams }}
{{- if include "ingot.feedbackTokenSecret" . }}
{{- $_ := set $routes "feedback_token_file" (printf "%s/%s" (include "ingot.gatewayTokenDir" .) .Values.gateway.feedbackToken.key) }}
{{- else }}
{{- $_ := set $routes "feedback_token_file" "" }}
{{- end }}
{{- with .Values.gateway.capture }}
{{- if .enabled }}
{{- $_ := set $routes "capture" (dict "sample" .sample "max_bytes" .maxBytes "retention_days" .retentionDays) }}
{{- end }}
{{- end }}
{{- toYaml $routes }}
{{- end }}

{{/* Checks of the gateway's values that JSON schema cannot express; each names the key. */}}
{{- define "ingot.validateGateway" -}}
{{- $c := .Values.gateway.capture }}
{{- if and $c.enabled (not $c.url) (not $c.pvcClaimName) }}
{{- fail "gateway.capture.enabled needs gateway.capture.url (s3:// or gs://) or gateway.capture.pvcClaimName" }}
{{- end }}
{{- if and (gt (float64 .Values.gateway.mirrorPercent) 0.0) (not .Values.challenger.enabled) }}
{{- fail (printf "gateway.mirrorPercent is %v but challenger.enabled is false: there is nothing to mirror to; set it to 0 or enable the challenger" .Values.gateway.mirrorPercent) }}
{{- end }}
{{- if and .Values.traffic.pin.enabled (ne .Values.traffic.pin.header "x-ingot-variant") }}
{{- fail (printf "traffic.pin.header is %q, but Ingot's gateway (traffic.mode ingot) pins by the x-ingot-variant header: set traffic.pin.header to x-ingot-variant" .Values.traffic.pin.header) }}
{{- end }}
{{- end }}
