{{/*
Helpers of the chart's own objects. The templates meant for workloads are in
_workload.tpl.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "modelstream.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The prefix of every object's name: fullnameOverride, else RELEASE-CHART, else RELEASE
when the release name already holds the chart name (a release called "modelstream"
gives modelstream-agent, not modelstream-modelstream-agent). Cut to 50 characters so
that the suffixes fit in 63.
*/}}
{{- define "modelstream.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* chart-version, for the helm.sh/chart label. */}}
{{- define "modelstream.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The labels every object of the release carries. */}}
{{- define "modelstream.labels" -}}
helm.sh/chart: {{ include "modelstream.chart" . }}
{{ include "modelstream.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: modelstream
{{- end -}}

{{/* The labels that select the release's pods; a component label is added to each. */}}
{{- define "modelstream.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modelstream.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The agent's ServiceAccount. */}}
{{- define "modelstream.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "modelstream.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
The image reference: [registry/]repository@digest, or [registry/]repository:tag with the
chart's appVersion as the default tag. Takes the chart's top-level context.
*/}}
{{- define "modelstream.image" -}}
{{- $image := .Values.image -}}
{{- $repository := $image.repository -}}
{{- if $image.registry -}}
{{- $repository = printf "%s/%s" (trimSuffix "/" $image.registry) $repository -}}
{{- end -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository (toString (default .Chart.AppVersion $image.tag)) -}}
{{- end -}}
{{- end -}}

{{/*
The agent's memory, as a quantity in Mi, when the cache is tmpfs-huge: tmpfs pages are
charged to the memory cgroup of the process that first writes them, and only the agent
writes, so its request and limit must cover the whole cache (cache.sizeGiB GiB) plus what
the agent needs itself (agent.memoryOverheadMiB). A limit below that would OOM-kill the
agent as the cache fills; a request below it would let the scheduler overcommit the node.
*/}}
{{- define "modelstream.agentMemory" -}}
{{- printf "%dMi" (add (mul (int .Values.cache.sizeGiB) 1024) (int .Values.agent.memoryOverheadMiB)) -}}
{{- end -}}

{{/* The agent's resources: agent.resources, with the memory above on tmpfs-huge. */}}
{{- define "modelstream.agentResources" -}}
{{- $resources := deepCopy (default (dict) .Values.agent.resources) -}}
{{- if eq .Values.cache.medium "tmpfs-huge" -}}
{{- $memory := include "modelstream.agentMemory" . -}}
{{- $_ := set $resources "requests" (merge (dict "memory" $memory) (omit (default (dict) $resources.requests) "memory")) -}}
{{- $_ := set $resources "limits" (merge (dict "memory" $memory) (omit (default (dict) $resources.limits) "memory")) -}}
{{- end -}}
{{- toYaml $resources -}}
{{- end -}}

{{/* Fails the render, naming the problem, when the values do not fit together. */}}
{{- define "modelstream.validate" -}}
{{- $names := list -}}
{{- range .Values.models -}}
{{- if has .name $names -}}
{{- fail (printf "models: the name %q is used twice (each model needs its own name, its directory in the cache)" .name) -}}
{{- end -}}
{{- $names = append $names .name -}}
{{- end -}}
{{- if .Values.example.enabled -}}
{{- if not .Values.example.model -}}
{{- fail "example.model: set it to one of models[].name (example.enabled is true)" -}}
{{- end -}}
{{- if not (has .Values.example.model $names) -}}
{{- fail (printf "example.model: %q is not one of models[].name (%s), so the agent would never fetch it" .Values.example.model (join ", " $names)) -}}
{{- end -}}
{{- end -}}
{{- if not .Values.agent.enabled -}}
{{- range $monitor := list "serviceMonitor" "podMonitor" -}}
{{- if (index $.Values.metrics $monitor).enabled -}}
{{- fail (printf "metrics.%s.enabled needs agent.enabled: it scrapes the agent" $monitor) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
