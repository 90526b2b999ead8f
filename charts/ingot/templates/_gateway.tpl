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
per-variant Services, each named with the version it serves, with the arm's cascade when it has
one (_cascade.tpl). The rollout controller rewrites it.
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
{{- with include "ingot.cascadeRoute" (dict "root" $ "arm" $variant) }}
{{- $_ := set (index $upstreams $variant) "cascade" (fromJson .) }}
{{- end }}
{{- end }}
{{- $_ := set $routes "upstreams" $upstreams }}
{{- if include "ingot.feedbackTokenSecret" . }}
{{- $_ := set $routes "feedback_token_file" (printf "%s/%s" (include "ingot.gatewayTokenDir" .) .Values.gateway.feedbackToken.key) }}
{{- else }}
{{- $_ := set $routes "feedback_token_file" "" }}
{{- end }}
{{- /* Capture, cache, fallback, deadline, breaker: one source for this table and the rollout target. */}}
{{- $policies := include "ingot.gatewayPolicies" . | fromJson }}
{{- with $policies.previous_champion }}
{{- $_ := set $upstreams "previous_champion" . }}
{{- end }}
{{- $routes = merge $routes (omit $policies "previous_champion") }}
{{- toYaml $routes }}
{{- end }}

{{/*
The table's settings the rollout controller never changes (JSON): capture, cache, fallback,
default_answer, deadline_ms, breaker, and the previous_champion upstream of the fallback chain.
The routing table and the rollout target (_rollout.tpl) both render them from here, so every table
the controller writes keeps them (ingot.rollout.routing.POLICY_KEYS).
*/}}
{{- define "ingot.gatewayPolicies" -}}
{{- $p := dict }}
{{- with .Values.gateway.capture }}
{{- if .enabled }}
{{- $_ := set $p "capture" (dict "sample" .sample "max_bytes" .maxBytes "retention_days" .retentionDays) }}
{{- end }}
{{- end }}
{{- with .Values.gateway.cache }}
{{- if .enabled }}
{{- $_ := set $p "cache" (dict "ttl_s" (int .ttlSeconds) "max_bytes" (int64 .maxBytes) "stale_ttl_s" (int .staleTtlSeconds)) }}
{{- end }}
{{- end }}
{{- with .Values.gateway.fallback }}
{{- if .steps }}
{{- $_ := set $p "fallback" .steps }}
{{- end }}
{{- if ne .defaultClassId nil }}
{{- $_ := set $p "default_answer" (dict "class_id" (int64 .defaultClassId)) }}
{{- end }}
{{- if gt (int .deadlineMs) 0 }}
{{- $_ := set $p "deadline_ms" (int .deadlineMs) }}
{{- end }}
{{- if gt (int .previousChampion.version) 0 }}
{{- $_ := set $p "previous_champion" (dict "rest" .previousChampion.rest "grpc" .previousChampion.grpc "version" (int64 .previousChampion.version)) }}
{{- end }}
{{- $_ := set $p "breaker" (dict "failures" (int .breaker.failures) "open_s" .breaker.openSeconds) }}
{{- end }}
{{- toJson $p }}
{{- end }}

{{/* Checks of the gateway's values that JSON schema cannot express; each names the key. */}}
{{- define "ingot.validateGateway" -}}
{{- $c := .Values.gateway.capture }}
{{- if and $c.enabled (not $c.url) (not $c.pvcClaimName) }}
{{- fail "gateway.capture.enabled needs gateway.capture.url (s3:// or gs://) or gateway.capture.pvcClaimName" }}
{{- end }}
{{- $cache := .Values.gateway.cache }}
{{- if and $cache.enabled (not $cache.redisSecret.existingSecret) }}
{{- fail "gateway.cache.enabled needs gateway.cache.redisSecret.existingSecret: an existing Secret holding the Redis URL (redis://host:6379/0) under gateway.cache.redisSecret.key" }}
{{- end }}
{{- $fb := .Values.gateway.fallback }}
{{- if and (has "cached" $fb.steps) (or (not $cache.enabled) (eq (int $cache.staleTtlSeconds) 0)) }}
{{- fail "gateway.fallback.steps has cached, which needs gateway.cache.enabled and gateway.cache.staleTtlSeconds > 0 (the copy kept past the TTL)" }}
{{- end }}
{{- if and (has "default" $fb.steps) (eq $fb.defaultClassId nil) }}
{{- fail "gateway.fallback.steps has default, which needs gateway.fallback.defaultClassId (the class the default answer names)" }}
{{- end }}
{{- if and (ne $fb.defaultClassId nil) (not (has "default" $fb.steps)) }}
{{- fail "gateway.fallback.defaultClassId is set but default is not in gateway.fallback.steps: the default answer is opt-in, add it to the steps" }}
{{- end }}
{{- if and (has "previous_champion" $fb.steps) (or (eq (int $fb.previousChampion.version) 0) (not $fb.previousChampion.rest) (not $fb.previousChampion.grpc)) }}
{{- fail "gateway.fallback.steps has previous_champion, which needs gateway.fallback.previousChampion.version, .rest and .grpc (a model server that serves that version)" }}
{{- end }}
{{- if and (gt (float64 .Values.gateway.mirrorPercent) 0.0) (not .Values.challenger.enabled) }}
{{- fail (printf "gateway.mirrorPercent is %v but challenger.enabled is false: there is nothing to mirror to; set it to 0 or enable the challenger" .Values.gateway.mirrorPercent) }}
{{- end }}
{{- if and .Values.traffic.pin.enabled (ne .Values.traffic.pin.header "x-ingot-variant") }}
{{- fail (printf "traffic.pin.header is %q, but Ingot's gateway (traffic.mode ingot) pins by the x-ingot-variant header: set traffic.pin.header to x-ingot-variant" .Values.traffic.pin.header) }}
{{- end }}
{{- end }}
