{{/*
Templates for workloads: what a pod that reads a model from the node cache includes.
Each takes a dict: "root" (the calling chart's top-level context, $) and "model" (a name in
models[]), and optionally "mountPath" (modelstream.cacheMount), "name" (the container's
name) and "subchart" (the dependency's name or alias when this chart is a dependency of
the caller's chart; default "modelstream"). Each renders a YAML list item, so include it
under the list with nindent:

  spec:
    initContainers:
      {{- include "modelstream.sidecar" (dict "root" $ "model" "llama-3-8b") | nindent 6 }}
    containers:
      - name: vllm
        args: ["/cache/models/llama-3-8b"]
        volumeMounts:
          {{- include "modelstream.cacheMount" (dict "root" $) | nindent 10 }}
    volumes:
      {{- include "modelstream.volumes" (dict "root" $) | nindent 6 }}

The model is then at /cache/models/NAME, with the bucket's file names. The pod must run on
a node where the agent runs (same nodeSelector and tolerations) and in a namespace whose
Pod Security level allows hostPath volumes (privileged).
*/}}

{{/*
Finds the modelstream values for a workload template and stores that context in the dict
as "ctx": the caller's own context when the caller is this chart, or the context of this
chart as the caller's dependency (.Subcharts), so that image, ports and the host path are
this chart's values even when a parent chart includes the template.
*/}}
{{- define "modelstream.resolve" -}}
{{- $root := .root -}}
{{- if not $root -}}
{{- fail "modelstream templates take (dict \"root\" $ ...): root is missing" -}}
{{- end -}}
{{- $subchart := default "modelstream" .subchart -}}
{{- if and (ne $root.Chart.Name "modelstream") $root.Subcharts (hasKey $root.Subcharts $subchart) -}}
{{- $root = index $root.Subcharts $subchart -}}
{{- else if ne $root.Chart.Name "modelstream" -}}
{{- fail (printf "modelstream templates: chart %q has no dependency %q; add modelstream to its dependencies (or pass \"subchart\" with its alias)" $root.Chart.Name $subchart) -}}
{{- end -}}
{{- $_ := set . "ctx" $root -}}
{{- end -}}

{{/* Checks the "model" of a workload template; "what" names the template. */}}
{{- define "modelstream.checkModel" -}}
{{- $model := toString (default "" .model) -}}
{{- if not (regexMatch "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$" $model) -}}
{{- fail (printf "%s: model %q is not a model name (1-128 of A-Z a-z 0-9 . _ -, not starting with '.')" .what $model) -}}
{{- end -}}
{{- $values := .ctx.Values -}}
{{- if $values.agent.enabled -}}
{{- $names := list -}}
{{- range $values.models -}}
{{- $names = append $names .name -}}
{{- end -}}
{{- if not (has $model $names) -}}
{{- fail (printf "%s: model %q is not in models[] (%s), so the agent would never fetch it and the pod would wait for ever" .what $model (join ", " $names)) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The securityContext of the containers a workload gets from this chart. */}}
{{- define "modelstream.workloadSecurityContext" -}}
runAsUser: 65532
runAsGroup: 65532
runAsNonRoot: true
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
modelstream.sidecar: a native sidecar (an init container with restartPolicy: Always,
Kubernetes 1.29+). It fetches nothing: it waits until the agent has published the model,
then holds it, so that the agent does not evict it while the pod runs. Its startupProbe
on /readyz turns ready once the model is there, and only then do the pod's containers
start.
*/}}
{{- define "modelstream.sidecar" -}}
{{- $_ := include "modelstream.resolve" . -}}
{{- $ctx := .ctx -}}
{{- $_ := include "modelstream.checkModel" (merge (dict "what" "modelstream.sidecar") .) -}}
{{- if semverCompare "<1.29.0-0" $ctx.Capabilities.KubeVersion.Version -}}
{{- fail (printf "modelstream.sidecar: native sidecars (restartPolicy: Always in initContainers) need Kubernetes 1.29 or later, and this is %s; use modelstream.initContainer (example.useSidecar: false), or, with helm template, pass --kube-version" $ctx.Capabilities.KubeVersion.Version) -}}
{{- end -}}
{{- $v := $ctx.Values -}}
{{- $port := int $v.sidecar.port -}}
- name: {{ default "modelstream" .name }}
  image: {{ include "modelstream.image" $ctx }}
  imagePullPolicy: {{ $v.image.pullPolicy }}
  restartPolicy: Always
  args:
    - serve
    - --cache
    - /cache
    - --wait-for
    - {{ .model | quote }}
    - --listen
    - {{ printf "0.0.0.0:%d" $port | quote }}
  env:
    - name: MODELSTREAM_LOG_FORMAT
      value: {{ $v.fetch.logFormat | quote }}
  ports:
    - name: modelstream
      containerPort: {{ $port }}
  startupProbe:
    httpGet:
      path: /readyz
      port: {{ $port }}
    periodSeconds: 2
    timeoutSeconds: 2
    failureThreshold: {{ int $v.sidecar.startupFailureThreshold }}
  {{- with $v.sidecar.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- include "modelstream.workloadSecurityContext" . | nindent 4 }}
  volumeMounts:
    {{- include "modelstream.cacheMount" (dict "root" $ctx "mountPath" "/cache") | nindent 4 }}
    - name: modelstream-tmp
      mountPath: /tmp
{{- end -}}

{{/*
modelstream.initContainer: for clusters without native sidecars (before 1.29). It waits
until the agent has published the model, then exits 0 (7 after initContainer.timeoutSeconds).
Nothing holds the model afterwards except the files the application keeps open, so the
agent may evict it once it is removed from models[]; prefer the sidecar.
*/}}
{{- define "modelstream.initContainer" -}}
{{- $_ := include "modelstream.resolve" . -}}
{{- $ctx := .ctx -}}
{{- $_ := include "modelstream.checkModel" (merge (dict "what" "modelstream.initContainer") .) -}}
{{- $v := $ctx.Values -}}
- name: {{ default "modelstream-wait" .name }}
  image: {{ include "modelstream.image" $ctx }}
  imagePullPolicy: {{ $v.image.pullPolicy }}
  args:
    - wait
    - --cache
    - /cache
    - {{ .model | quote }}
    - --timeout
    - {{ int $v.initContainer.timeoutSeconds | quote }}
  env:
    - name: MODELSTREAM_LOG_FORMAT
      value: {{ $v.fetch.logFormat | quote }}
  {{- with $v.initContainer.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- include "modelstream.workloadSecurityContext" . | nindent 4 }}
  volumeMounts:
    {{- include "modelstream.cacheMount" (dict "root" $ctx "mountPath" "/cache") | nindent 4 }}
    - name: modelstream-tmp
      mountPath: /tmp
{{- end -}}

{{/*
modelstream.cacheMount: the node cache, read-only, at "mountPath" (default /cache).
HostToContainer propagation: if the pod starts before the agent has mounted the tmpfs on
the host path, the mount still reaches the container when it appears.
*/}}
{{- define "modelstream.cacheMount" -}}
- name: modelstream-cache
  mountPath: {{ default "/cache" .mountPath }}
  readOnly: true
  mountPropagation: HostToContainer
{{- end -}}

{{/* modelstream.cacheVolume: the node cache's hostPath volume (named modelstream-cache). */}}
{{- define "modelstream.cacheVolume" -}}
{{- $_ := include "modelstream.resolve" . -}}
- name: modelstream-cache
  hostPath:
    path: {{ .ctx.Values.cache.hostPath }}
    type: DirectoryOrCreate
{{- end -}}

{{/* modelstream.tmpVolume: /tmp of the containers above (read-only root file systems). */}}
{{- define "modelstream.tmpVolume" -}}
- name: modelstream-tmp
  emptyDir:
    sizeLimit: 64Mi
{{- end -}}

{{/* modelstream.volumes: both volumes above, the usual way to include them. */}}
{{- define "modelstream.volumes" -}}
{{ include "modelstream.cacheVolume" . }}
{{ include "modelstream.tmpVolume" . }}
{{- end -}}
