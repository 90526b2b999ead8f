{{/* Chart name, overridable. */}}
{{- define "ingot.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Resource name prefix: <release>-<chart>, or <release> when it already contains the chart name. */}}
{{- define "ingot.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "ingot.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every object carries. */}}
{{- define "ingot.labels" -}}
helm.sh/chart: {{ include "ingot.chart" . }}
app.kubernetes.io/name: {{ include "ingot.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ingot
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selects every model server pod of the release (both variants). */}}
{{- define "ingot.serverSelectorLabels" -}}
app.kubernetes.io/name: {{ include "ingot.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: model-server
{{- end }}

{{/* Selects the pods of one variant. Call with (dict "root" $ "variant" "champion"). */}}
{{- define "ingot.variantSelectorLabels" -}}
{{ include "ingot.serverSelectorLabels" .root }}
ingot.dev/variant: {{ .variant }}
{{- end }}

{{- define "ingot.variantLabels" -}}
{{ include "ingot.labels" .root }}
app.kubernetes.io/component: model-server
ingot.dev/variant: {{ .variant }}
{{- end }}

{{/* Name of one variant's objects. */}}
{{- define "ingot.variantName" -}}
{{- printf "%s-%s" (include "ingot.fullname" .root) .variant | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The model config ConfigMap of one variant (the rollout controller patches it by this name). */}}
{{- define "ingot.modelConfigName" -}}
{{- printf "%s-%s-model-config" (include "ingot.fullname" .root) .variant | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ingot.serverConfigName" -}}
{{- printf "%s-server-config" (include "ingot.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ingot.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ingot.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "ingot.pvcName" -}}
{{- if .Values.storage.pvc.existingClaim }}
{{- .Values.storage.pvc.existingClaim }}
{{- else }}
{{- printf "%s-models" (include "ingot.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* Fully qualified in-cluster host of a Service name. */}}
{{- define "ingot.fqdn" -}}
{{- printf "%s.%s.svc.%s" .name .root.Release.Namespace .root.Values.clusterDomain }}
{{- end }}

{{/* The TF Serving image: repository:tag[-gpu][@digest]. */}}
{{- define "ingot.servingImage" -}}
{{- $img := .Values.image }}
{{- if .Values.gpu.enabled }}
{{- $ref := printf "%s:%s%s" $img.repository $img.tag $img.gpuTagSuffix }}
{{- if $img.gpuDigest }}{{ printf "%s@%s" $ref $img.gpuDigest }}{{ else }}{{ $ref }}{{ end }}
{{- else }}
{{- $ref := printf "%s:%s" $img.repository $img.tag }}
{{- if $img.digest }}{{ printf "%s@%s" $ref $img.digest }}{{ else }}{{ $ref }}{{ end }}
{{- end }}
{{- end }}

{{- define "ingot.prePullImage" -}}
{{- $img := .Values.storage.objectStore.prePull.image }}
{{- $ref := printf "%s:%s" $img.repository $img.tag }}
{{- if $img.digest }}{{ printf "%s@%s" $ref $img.digest }}{{ else }}{{ $ref }}{{ end }}
{{- end }}

{{/* Object store scheme: gs or s3 ("" when not in objectStore mode). */}}
{{- define "ingot.objectScheme" -}}
{{- if eq .Values.storage.mode "objectStore" }}
{{- regexReplaceAll "^([a-z0-9]+)://.*$" .Values.storage.objectStore.uri "${1}" }}
{{- end }}
{{- end }}

{{/* Where the server reads <model.name>/<version>/ from. */}}
{{- define "ingot.modelBasePath" -}}
{{- if and (eq .Values.storage.mode "objectStore") (not .Values.storage.objectStore.prePull.enabled) }}
{{- printf "%s/%s" (trimSuffix "/" .Values.storage.objectStore.uri) .Values.model.name }}
{{- else }}
{{- printf "/models/%s" .Values.model.name }}
{{- end }}
{{- end }}

{{/* True ("true") when the model server pods need HTTPS egress to object storage. */}}
{{- define "ingot.needsObjectStoreEgress" -}}
{{- if eq .Values.storage.mode "objectStore" }}true{{ end }}
{{- end }}

{{/* The variants that are deployed, as a list of names. */}}
{{- define "ingot.enabledVariants" -}}
{{- if .Values.challenger.enabled }}champion,challenger{{ else }}champion{{ end }}
{{- end }}

{{/*
Readiness/startup check, run with bash in the TF Serving container (the image has bash, no curl).
It asks the REST status endpoint of the model over /dev/tcp and succeeds only when some version
reports "state": "AVAILABLE". $1 = REST port, $2 = model name. Also used by the helm test pod, with
$3 = host. Any version AVAILABLE keeps a pod ready during an in-place version swap, because TF
Serving's availability-preserving policy serves the old version until the new one is loaded and warm.
*/}}
{{- define "ingot.modelAvailableScript" -}}
exec 3<>"/dev/tcp/${3:-127.0.0.1}/$1" || exit 1
printf 'GET /v1/models/%s HTTP/1.0\r\nHost: %s\r\n\r\n' "$2" "${3:-localhost}" >&3
ok=1
while IFS= read -r -t 4 line || [[ -n "$line" ]]; do
  [[ "$line" =~ \"state\"[[:space:]]*:[[:space:]]*\"AVAILABLE\" ]] && ok=0
  line=""
done <&3
exit $ok
{{- end }}

{{/* Restricted-PSS container securityContext. */}}
{{- define "ingot.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Restricted-PSS pod securityContext. */}}
{{- define "ingot.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
fsGroup: {{ .Values.securityContext.fsGroup }}
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
Checks JSON schema cannot express. Rendered (as nothing) from deployment.yaml so every install and
template run goes through them; each failure names the key, the value and what is expected.
*/}}
{{- define "ingot.validate" -}}
{{- if not (semverCompare ">=1.27.0-0" .Capabilities.KubeVersion.Version) }}
{{- fail (printf "Kubernetes %s is not supported: this chart needs 1.27 or newer (autoscaling/v2 behavior, matchLabelKeys, PDB unhealthyPodEvictionPolicy)" .Capabilities.KubeVersion.Version) }}
{{- end }}
{{- $w := .Values.traffic.weights }}
{{- if ne (add $w.champion $w.challenger) 100 }}
{{- fail (printf "traffic.weights must sum to 100, got champion %v + challenger %v = %v" $w.champion $w.challenger (add $w.champion $w.challenger)) }}
{{- end }}
{{- if and (not .Values.challenger.enabled) (gt (int $w.challenger) 0) }}
{{- fail (printf "traffic.weights.challenger is %v but challenger.enabled is false: enable the challenger or set its weight to 0 (champion 100)" $w.challenger) }}
{{- end }}
{{- if and .Values.challenger.enabled (not .Values.challenger.version) }}
{{- fail "challenger.version is required when challenger.enabled is true: set it to the integer model version the challenger serves" }}
{{- end }}
{{- if and (eq .Values.traffic.mode "gatewayAPI") (not .Values.traffic.gatewayAPI.parentRefs) }}
{{- fail "traffic.gatewayAPI.parentRefs is empty: traffic.mode gatewayAPI needs the Gateway(s) the routes attach to, e.g. [{name: ingot, namespace: gateway-system}]" }}
{{- end }}
{{- if and .Values.traffic.istio.mirror.enabled (eq .Values.traffic.mode "istio") (not .Values.challenger.enabled) }}
{{- fail "traffic.istio.mirror.enabled mirrors to the challenger, but challenger.enabled is false" }}
{{- end }}
{{- if eq .Values.storage.mode "objectStore" }}
{{- $uri := .Values.storage.objectStore.uri }}
{{- if not (regexMatch "^(gs|s3)://[^/]+" $uri) }}
{{- fail (printf "storage.objectStore.uri must be a gs://bucket[/prefix] or s3://bucket[/prefix] URI when storage.mode is objectStore, got %q" $uri) }}
{{- end }}
{{- if and (hasPrefix "s3://" $uri) (not .Values.storage.objectStore.prePull.enabled) }}
{{- fail "storage.objectStore.uri is s3:// but prePull is off: the official TF Serving images (>= 2.7) cannot read s3:// (tensorflow/serving#1963); set storage.objectStore.prePull.enabled=true" }}
{{- end }}
{{- end }}
{{- if .Values.server.batching.enabled }}
{{- $sizes := .Values.server.batching.allowedBatchSizes }}
{{- if and $sizes (ne (int (last $sizes)) (int .Values.server.batching.maxBatchSize)) }}
{{- fail (printf "server.batching.allowedBatchSizes must end with maxBatchSize (%v), got %v" .Values.server.batching.maxBatchSize $sizes) }}
{{- end }}
{{- $previous := 0 }}
{{- range $sizes }}
{{- if le (int .) $previous }}
{{- fail (printf "server.batching.allowedBatchSizes must be strictly increasing, got %v" $sizes) }}
{{- end }}
{{- $previous = int . }}
{{- end }}
{{- end }}
{{- end }}

{{/* Ports of the stable and per-variant Services (named so Istio detects gRPC and HTTP). */}}
{{- define "ingot.servicePorts" -}}
- name: grpc
  port: {{ .Values.server.grpcPort }}
  targetPort: grpc
  protocol: TCP
  {{- if eq .Values.traffic.mode "gatewayAPI" }}
  # Gateway API implementations speak HTTP/2 cleartext to backends with this standard appProtocol.
  appProtocol: kubernetes.io/h2c
  {{- end }}
- name: http
  port: {{ .Values.server.restPort }}
  targetPort: http
  protocol: TCP
{{- end }}

{{/*
The gRPC methods a client needs, and the only ones the chart's routes forward to the model servers:
PredictionService Predict, Classify, Regress and GetModelMetadata, and ModelService GetModelStatus.
ModelService/HandleReloadConfigRequest (TF Serving's unauthenticated model loading) is never routed.
*/}}
{{- define "ingot.clientGrpcMethods" -}}
- {service: tensorflow.serving.PredictionService, method: Predict}
- {service: tensorflow.serving.PredictionService, method: Classify}
- {service: tensorflow.serving.PredictionService, method: Regress}
- {service: tensorflow.serving.PredictionService, method: GetModelMetadata}
- {service: tensorflow.serving.ModelService, method: GetModelStatus}
{{- end }}

{{- define "ingot.reloadGrpcPath" -}}/tensorflow.serving.ModelService/HandleReloadConfigRequest{{- end }}

{{/* The feedback token Secret the gateway mounts: the given one, else (rollout.enabled) the chart's own. */}}
{{- define "ingot.feedbackTokenGenerated" -}}
{{- if and .Values.rollout.enabled (not .Values.gateway.feedbackToken.existingSecret) }}true{{ end }}
{{- end }}

{{- define "ingot.feedbackTokenSecret" -}}
{{- if .Values.gateway.feedbackToken.existingSecret }}{{ .Values.gateway.feedbackToken.existingSecret }}
{{- else if include "ingot.feedbackTokenGenerated" . }}{{ printf "%s-feedback-token" (include "ingot.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* Checks of the network policy values that JSON schema cannot express; each names the value. */}}
{{- define "ingot.validateNetworkPolicy" -}}
{{- $np := .Values.networkPolicy }}
{{- if and $np.enabled $np.egress.enabled (include "ingot.needsObjectStoreEgress" .) }}
{{- if not (or $np.egress.objectStore.peers $np.egress.extraRules) }}
{{- fail "networkPolicy.egress.objectStore.peers is empty but storage.mode is objectStore: name the object store endpoints the model servers may reach (e.g. [{ipBlock: {cidr: 199.36.153.8/30}}] for private.googleapis.com), add networkPolicy.egress.extraRules, or set networkPolicy.egress.enabled=false" }}
{{- end }}
{{- if and (not .Values.storage.objectStore.credentials.existingSecret) (not $np.egress.allowMetadataServer) }}
{{- fail "storage.objectStore.credentials.existingSecret is empty (ambient identity), which needs the cloud metadata server: set networkPolicy.egress.allowMetadataServer=true, or give a credentials Secret" }}
{{- end }}
{{- end }}
{{- end }}

{{/* NetworkPolicy egress rules shared by the gateway's and the controller's policies. */}}
{{- define "ingot.egressToModelServers" -}}
- to:
    - podSelector:
        matchLabels:
          {{- include "ingot.serverSelectorLabels" .root | nindent 10 }}
  ports:
    {{- range .ports }}
    - port: {{ . }}
      protocol: TCP
    {{- end }}
{{- end }}

{{- define "ingot.egressToDatabase" -}}
{{- $db := .Values.networkPolicy.database }}
- {{- with $db.peers }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  ports:
    - port: {{ $db.port }}
      protocol: TCP
{{- end }}

{{- define "ingot.egressToDns" -}}
- to:
    {{- toYaml .Values.networkPolicy.egress.dnsPeers | nindent 4 }}
  ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
{{- end }}
