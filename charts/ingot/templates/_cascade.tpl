{{/*
Confidence cascades (<variant>.cascade, traffic.mode ingot; docs/gateway.md "Confidence cascade"):
an arm's small model answers when its top-1 probability reaches the threshold, the arm's own model
otherwise. The small model runs in a Deployment of its own (<fullname>-<variant>-small, `ingot
serve` from the Ingot image, labelled ingot.dev/variant: <variant>-small, so no selector of the
arm's own objects picks its pods; deployment.yaml renders it beside the arm's TF Serving) or is an
external upstream given by URL. The routing table and the rollout controller's
target both carry the arm's `cascade`, so a rewrite of the table during a rollout keeps it.
*/}}

{{/*
Every model server Deployment of the release, as a comma-separated list: each enabled variant,
followed by "<variant>-small" when its cascade runs its small model in the chart.
*/}}
{{- define "ingot.modelServers" -}}
{{- $out := list }}
{{- range $arm := splitList "," (include "ingot.enabledVariants" .) }}
{{- $out = append $out $arm }}
{{- $c := (index $.Values $arm).cascade }}
{{- if and $c.enabled $c.small.server.enabled }}
{{- $out = append $out (printf "%s-small" $arm) }}
{{- end }}
{{- end }}
{{- join "," $out }}
{{- end }}

{{/* The arm (champion or challenger) a model server belongs to. Call with (dict "root" $ "server" NAME). */}}
{{- define "ingot.serverArm" -}}
{{- trimSuffix "-small" .server }}
{{- end }}

{{/*
The version a model server loads: the arm's version, or for a small server its cascade's
small.version (null: the arm's own version, served from its int8 model.tflite).
Call with (dict "root" $ "server" NAME).
*/}}
{{- define "ingot.serverVersion" -}}
{{- $arm := index .root.Values (include "ingot.serverArm" .) }}
{{- if and (hasSuffix "-small" .server) (ne $arm.cascade.small.version nil) }}
{{- int64 $arm.cascade.small.version }}
{{- else }}
{{- int64 $arm.version }}
{{- end }}
{{- end }}

{{/*
"true" when a model server runs `ingot serve` (the Ingot image) instead of TF Serving: a cascade's
small server, and any variant with tflite.preferTfliteModel. TF Serving's own TFLite path serves only
the signature stored in model.tflite (serving_default: images -> output_0), not Ingot's contract
(serving_bytes, probabilities, class_ids, class_names); `ingot serve --prefer_tflite_model` runs the
int8 model on LiteRT behind the SavedModel's signatures. LiteRT reads a local file, so such a server
reads a local copy (the PVC, or its pre-pull from object storage) and runs on CPU.
Call with (dict "root" $ "server" NAME).
*/}}
{{- define "ingot.servesWithIngot" -}}
{{- $arm := index .root.Values (include "ingot.serverArm" .) }}
{{- if or (hasSuffix "-small" .server) $arm.tflite.preferTfliteModel }}true{{ end }}
{{- end }}

{{/*
"true" when an arm's cascade runs its small model in the chart on the arm's own version (small.version
null: e.g. the arm's int8 model.tflite): under rollout.enabled the controller moves that small
server's version with the arm's (its model config is then the controller's, kept live on upgrade
like the arm's). Call with (dict "root" $ "arm" "champion").
*/}}
{{- define "ingot.smallFollowsArm" -}}
{{- $c := (index .root.Values .arm).cascade }}
{{- if and $c.enabled $c.small.server.enabled (eq $c.small.version nil) }}true{{ end }}
{{- end }}

{{/*
The arm's cascade as the routing table writes it (JSON: {small: {rest, grpc, version}, threshold}),
or nothing when the arm has none. Call with (dict "root" $ "arm" "champion").
*/}}
{{- define "ingot.cascadeRoute" -}}
{{- $c := (index .root.Values .arm).cascade }}
{{- if $c.enabled }}
{{- $version := include "ingot.serverVersion" (dict "root" .root "server" (printf "%s-small" .arm)) | int64 }}
{{- $small := dict "version" $version }}
{{- if $c.small.server.enabled }}
{{- $host := include "ingot.fqdn" (dict "root" .root "name" (include "ingot.variantName" (dict "root" .root "variant" (printf "%s-small" .arm)))) }}
{{- $_ := set $small "rest" (printf "http://%s:%v" $host .root.Values.server.restPort) }}
{{- $_ := set $small "grpc" (printf "%s:%v" $host .root.Values.server.grpcPort) }}
{{- else }}
{{- $_ := set $small "rest" (trimSuffix "/" $c.small.external.rest) }}
{{- $_ := set $small "grpc" $c.small.external.grpc }}
{{- end }}
{{- toJson (dict "small" $small "threshold" $c.threshold) }}
{{- end }}
{{- end }}

{{/* NOTES.txt line of an arm's cascade (nothing without one). Call with (dict "root" $ "arm" "champion"). */}}
{{- define "ingot.cascadeNote" -}}
{{- $c := (index .root.Values .arm).cascade }}
{{- if $c.enabled }}
{{- $version := include "ingot.serverVersion" (dict "root" .root "server" (printf "%s-small" .arm)) }}
{{- $where := $c.small.external.rest }}
{{- if $c.small.server.enabled }}
{{- $where = printf "Deployment %s%s" (include "ingot.variantName" (dict "root" .root "variant" (printf "%s-small" .arm))) (ternary " (int8 model.tflite)" "" $c.small.server.tflite.preferTfliteModel) }}
{{- end }}
{{- printf "\n              cascade: small version %s on %s answers at top-1 >= %v, the %s otherwise" $version $where $c.threshold .arm }}
{{- end }}
{{- end }}

{{/* The TCP port of a REST base URL (http://host[:port]): the explicit one, else the scheme's. */}}
{{- define "ingot.urlPort" -}}
{{- $u := urlParse . }}
{{- $port := regexFind ":[0-9]+$" $u.host }}
{{- if $port }}{{ trimPrefix ":" $port }}{{ else if eq $u.scheme "https" }}443{{ else }}80{{ end }}
{{- end }}

{{/*
Gateway egress to external small models (<variant>.cascade.small.external): to networkPolicy.cascade.peers
(any address when empty), on the ports of their URLs only. Nothing when every small model runs in the chart.
*/}}
{{- define "ingot.egressToExternalSmallModels" -}}
{{- $ports := list }}
{{- range $arm := splitList "," (include "ingot.enabledVariants" .) }}
{{- $c := (index $.Values $arm).cascade }}
{{- if and $c.enabled (not $c.small.server.enabled) }}
{{- $ports = append $ports (include "ingot.urlPort" $c.small.external.rest | int) }}
{{- $ports = append $ports (regexFind "[0-9]+$" $c.small.external.grpc | int) }}
{{- end }}
{{- end }}
{{- if $ports }}
# External small models of the cascades.
- {{- with .Values.networkPolicy.cascade.peers }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  ports:
    {{- range $ports | uniq }}
    - port: {{ . }}
      protocol: TCP
    {{- end }}
{{- end }}
{{- end }}

{{/* Checks of the cascade values that JSON schema cannot express; each names the key. */}}
{{- define "ingot.validateCascade" -}}
{{- range $arm := list "champion" "challenger" }}
{{- $v := index $.Values $arm }}
{{- $c := $v.cascade }}
{{- if $c.enabled }}
{{- if and (eq $arm "challenger") (not $v.enabled) }}
{{- fail "challenger.cascade.enabled is true but challenger.enabled is false: there is no challenger to cascade; enable the challenger or set challenger.cascade.enabled=false" }}
{{- end }}
{{- if ne $.Values.traffic.mode "ingot" }}
{{- fail (printf "%s.cascade.enabled needs traffic.mode ingot (got %q): only Ingot's gateway runs a confidence cascade" $arm $.Values.traffic.mode) }}
{{- end }}
{{- if eq $c.threshold nil }}
{{- fail (printf "%s.cascade.enabled needs %s.cascade.threshold: the small model's top-1 probability at or above which it answers, 0 < threshold <= 1 (`ingot cascade calibrate %s --small VERSION --full VERSION --dataset DIR` picks it)" $arm $arm $.Values.model.name) }}
{{- end }}
{{- $external := or $c.small.external.rest $c.small.external.grpc }}
{{- if and $c.small.server.enabled $external }}
{{- fail (printf "%s.cascade.small names both a server (%s.cascade.small.server.enabled) and an external upstream (%s.cascade.small.external): choose one; set server.enabled=false to use the external one" $arm $arm $arm) }}
{{- end }}
{{- if and (not $c.small.server.enabled) (not (and $c.small.external.rest $c.small.external.grpc)) }}
{{- fail (printf "%s.cascade.enabled needs a small model: %s.cascade.small.server.enabled=true (the chart runs it), or %s.cascade.small.external.rest and .grpc (TF Serving's REST base URL and gRPC host:port of one running elsewhere)" $arm $arm $arm) }}
{{- end }}
{{- $version := include "ingot.serverVersion" (dict "root" $ "server" (printf "%s-small" $arm)) }}
{{- if and $c.small.server.enabled (eq $version (printf "%d" (int64 $v.version))) (eq $c.small.server.tflite.preferTfliteModel $v.tflite.preferTfliteModel) }}
{{- fail (printf "%s.cascade.small would serve the same model as %s itself (version %s, preferTfliteModel %v): set %s.cascade.small.server.tflite.preferTfliteModel=true (the version's int8 model.tflite) or %s.cascade.small.version to a smaller architecture's version" $arm $arm $version $v.tflite.preferTfliteModel $arm $arm) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
