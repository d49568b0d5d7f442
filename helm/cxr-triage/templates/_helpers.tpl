{{/*
Names, labels, images and the checks every render runs. Selector labels never change between
chart versions (a Deployment's selector is immutable); everything else may.
*/}}

{{/* Chart name, or nameOverride. */}}
{{- define "cxr-triage.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* "<release>-<chart>", or fullnameOverride; the release name alone when it already contains the chart name. */}}
{{- define "cxr-triage.fullname" -}}
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

{{/* "<chart>-<version>" for the helm.sh/chart label. */}}
{{- define "cxr-triage.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every resource. */}}
{{- define "cxr-triage.labels" -}}
helm.sh/chart: {{ include "cxr-triage.chart" . }}
{{ include "cxr-triage.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: cxr-triage
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels: the release's pods, whatever their component. */}}
{{- define "cxr-triage.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cxr-triage.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Selector labels of the service pods (the retrain pods have component "retrain" and are never selected). */}}
{{- define "cxr-triage.serverSelectorLabels" -}}
{{ include "cxr-triage.selectorLabels" . }}
app.kubernetes.io/component: server
{{- end }}

{{/* Labels of the retrain resources and pods. */}}
{{- define "cxr-triage.retrainLabels" -}}
{{ include "cxr-triage.labels" . }}
app.kubernetes.io/component: retrain
{{- end }}

{{/*
An image reference from {repository, tag, digest}: the digest wins; an empty tag is the appVersion
plus "suffix" (the Dockerfile tags the service image <version>-gpu / <version>-cpu).
Call with (dict "image" .Values.image "context" $ "suffix" "-cpu").
*/}}
{{- define "cxr-triage.image" -}}
{{- $image := .image }}
{{- if $image.digest }}
{{- printf "%s@%s" $image.repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $image.repository (default (printf "%s%s" .context.Chart.AppVersion (default "" .suffix)) $image.tag) }}
{{- end }}
{{- end }}

{{/* The service image: its variant follows gpu.enabled unless a tag or digest is given. */}}
{{- define "cxr-triage.serviceImage" -}}
{{- include "cxr-triage.image" (dict "image" .Values.image "context" . "suffix" (ternary "-gpu" "-cpu" .Values.gpu.enabled)) }}
{{- end }}

{{- define "cxr-triage.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "cxr-triage.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "cxr-triage.configMapName" -}}
{{- printf "%s-config" (include "cxr-triage.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The Secret holding the API key file: existingSecret, else "<fullname>-api-keys" (created or yours). */}}
{{- define "cxr-triage.apiKeysSecretName" -}}
{{- if .Values.apiKeys.existingSecret }}
{{- .Values.apiKeys.existingSecret }}
{{- else }}
{{- printf "%s-api-keys" (include "cxr-triage.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "cxr-triage.modelClaimName" -}}
{{- if .Values.modelStore.persistence.existingClaim }}
{{- .Values.modelStore.persistence.existingClaim }}
{{- else }}
{{- printf "%s-models" (include "cxr-triage.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* Fixed paths inside the containers. */}}
{{- define "cxr-triage.modelStorePath" -}}/models{{- end }}
{{/* The PACS spool claim: existingClaim, else "<fullname>-pacs-spool". */}}
{{- define "cxr-triage.pacsClaimName" -}}
{{- if .Values.pacs.spool.persistence.existingClaim }}
{{- .Values.pacs.spool.persistence.existingClaim }}
{{- else }}
{{- printf "%s-pacs-spool" (include "cxr-triage.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* Where the spool claim is mounted; the service keeps its 0700 spool in a folder of it. */}}
{{- define "cxr-triage.pacsMountPath" -}}/var/lib/cxr-pacs{{- end }}
{{- define "cxr-triage.pacsTlsDir" -}}/etc/cxr/dicom-tls{{- end }}

{{- define "cxr-triage.apiKeysDir" -}}/etc/cxr/api-keys{{- end }}
{{- define "cxr-triage.apiKeysFile" -}}{{ include "cxr-triage.apiKeysDir" . }}/api_keys{{- end }}
{{- define "cxr-triage.auditHashKeyFile" -}}/etc/cxr/audit-hash-key/audit_hash_key{{- end }}

{{/* CXR_EXECUTION_PROVIDER: config.executionProvider, else cuda with a GPU and cpu without. */}}
{{- define "cxr-triage.executionProvider" -}}
{{- if .Values.config.executionProvider }}
{{- .Values.config.executionProvider }}
{{- else if .Values.gpu.enabled }}
{{- "cuda" }}
{{- else }}
{{- "cpu" }}
{{- end }}
{{- end }}

{{/* Pod-level securityContext: fixed hardening, numeric ids from values. */}}
{{- define "cxr-triage.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
fsGroup: {{ .Values.securityContext.fsGroup }}
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Container-level securityContext, the same for every container of the chart. */}}
{{- define "cxr-triage.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
Resources plus a GPU: (dict "resources" R "gpu" G). The extended resource goes into limits and
requests alike (they must be equal for extended resources).
*/}}
{{- define "cxr-triage.resourcesWithGpu" -}}
{{- $resources := deepCopy (default dict .resources) }}
{{- if .gpu.enabled }}
{{- $limits := deepCopy (default dict (get $resources "limits")) }}
{{- $requests := deepCopy (default dict (get $resources "requests")) }}
{{- $_ := set $limits .gpu.resourceName (.gpu.count | int64) }}
{{- $_ := set $requests .gpu.resourceName (.gpu.count | int64) }}
{{- $_ := set $resources "limits" $limits }}
{{- $_ := set $resources "requests" $requests }}
{{- end }}
{{- toYaml $resources }}
{{- end }}

{{/*
Checks across values that a JSON schema cannot express; each stops the render with the reason.
*/}}
{{- define "cxr-triage.validate" -}}
{{- $grace := float64 .Values.terminationGracePeriodSeconds }}
{{- $needed := addf .Values.lifecycle.preStopSleepSeconds .Values.config.drainSeconds .Values.config.requestTimeoutS }}
{{- if le $grace (float64 $needed) }}
{{- fail (printf "terminationGracePeriodSeconds (%v) must exceed lifecycle.preStopSleepSeconds + config.drainSeconds + config.requestTimeoutS (%v): SIGKILL would cut off requests still being served while draining" .Values.terminationGracePeriodSeconds $needed) }}
{{- end }}
{{- $provider := include "cxr-triage.executionProvider" . }}
{{- if and (has $provider (list "cuda" "tensorrt")) (not .Values.gpu.enabled) }}
{{- fail (printf "config.executionProvider is %s but gpu.enabled is false: the service would refuse to start without a GPU" $provider) }}
{{- end }}
{{- if and (eq $provider "cpu") .Values.gpu.enabled }}
{{- fail "gpu.enabled reserves a GPU that config.executionProvider=cpu never uses" }}
{{- end }}
{{- if and (gt (float64 .Values.config.modelWatchS) 0.0) (not (has .Values.config.modelVersion (list "active" "latest"))) }}
{{- fail (printf "config.modelWatchS > 0 needs config.modelVersion active or latest: the pinned version %q never changes, so the service refuses to start" .Values.config.modelVersion) }}
{{- end }}
{{- if and (eq .Values.config.auth "required") .Values.apiKeys.create (empty .Values.apiKeys.keys) }}
{{- fail "apiKeys.create needs at least one entry in apiKeys.keys" }}
{{- end }}
{{- if and .Values.apiKeys.create .Values.apiKeys.existingSecret }}
{{- fail "set either apiKeys.create (a Secret from values) or apiKeys.existingSecret, not both" }}
{{- end }}
{{- if and (eq .Values.modelStore.source "initContainer") (or (empty .Values.modelStore.initContainer.image.repository) (empty .Values.modelStore.initContainer.command)) }}
{{- fail "modelStore.source=initContainer needs modelStore.initContainer.image.repository and .command" }}
{{- end }}
{{- if and .Values.autoscaling.enabled .Values.autoscaling.targetCPUUtilizationPercentage (not (dig "requests" "cpu" "" .Values.resources)) }}
{{- fail "autoscaling on CPU utilisation needs resources.requests.cpu" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) }}
{{- fail "autoscaling.minReplicas exceeds autoscaling.maxReplicas" }}
{{- end }}
{{- if and .Values.serviceMonitor.enabled (eq .Values.config.metricsAuth "required") (not .Values.serviceMonitor.bearerTokenSecret.name) }}
{{- fail "serviceMonitor needs serviceMonitor.bearerTokenSecret.name (a key with the metrics scope) while config.metricsAuth is required; or set config.metricsAuth=disabled" }}
{{- end }}
{{- if .Values.pacs.enabled }}
{{- if or .Values.autoscaling.enabled (ne (int .Values.replicaCount) 1) }}
{{- fail "pacs.enabled needs replicaCount 1 and autoscaling off: one pod owns the spool and its SQLite job table (docs/pacs.md: scale out with one release per claim)" }}
{{- end }}
{{- if and .Values.pacs.tls.requireClientCert (not .Values.pacs.tls.secretName) }}
{{- fail "pacs.tls.requireClientCert needs pacs.tls.secretName (with ca.crt)" }}
{{- end }}
{{- end }}
{{- if .Values.retrain.enabled }}
{{- if ne .Values.modelStore.source "pvc" }}
{{- fail "retrain publishes into the model store PVC: it needs modelStore.source=pvc" }}
{{- end }}
{{- if not .Values.retrain.data.existingClaim }}
{{- fail "retrain needs retrain.data.existingClaim (the training films)" }}
{{- end }}
{{- if eq .Values.config.modelVersion "latest" }}
{{- fail "retrain exports every candidate into the store, so config.modelVersion=latest would serve a candidate before publish has judged it: use \"active\"" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The pod template of a retrain Job, shared by the CronJob and the one-off Job. Step 1 trains into a
run folder and exports the candidate as a new store version; step 2 publishes it (moves ACTIVE only
if it is at least as good as the active model on the same films). Extra training args reach the
script as "$@", so they are never re-parsed by a shell.
*/}}
{{- define "cxr-triage.retrainJobSpec" -}}
backoffLimit: {{ .Values.retrain.backoffLimit }}
activeDeadlineSeconds: {{ .Values.retrain.activeDeadlineSeconds }}
ttlSecondsAfterFinished: {{ .Values.retrain.ttlSecondsAfterFinished }}
template:
  metadata:
    labels:
      {{- include "cxr-triage.retrainLabels" . | nindent 6 }}
  spec:
    restartPolicy: Never
    serviceAccountName: {{ include "cxr-triage.serviceAccountName" . }}
    automountServiceAccountToken: {{ .Values.serviceAccount.automountToken }}
    {{- with .Values.imagePullSecrets }}
    imagePullSecrets:
      {{- range . }}
      - name: {{ . }}
      {{- end }}
    {{- end }}
    securityContext:
      {{- include "cxr-triage.podSecurityContext" . | nindent 6 }}
    {{- $nodeSelector := deepCopy .Values.retrain.nodeSelector }}
    {{- $tolerations := .Values.retrain.tolerations }}
    {{- if .Values.retrain.gpu.enabled }}
    {{- $nodeSelector = merge (deepCopy .Values.retrain.gpu.nodeSelector) $nodeSelector }}
    {{- $tolerations = concat $tolerations .Values.retrain.gpu.tolerations }}
    {{- end }}
    {{- with $nodeSelector }}
    nodeSelector:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with $tolerations }}
    tolerations:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with .Values.retrain.affinity }}
    affinity:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    containers:
      - name: retrain
        image: {{ include "cxr-triage.image" (dict "image" .Values.retrain.image "context" .) }}
        imagePullPolicy: {{ .Values.retrain.image.pullPolicy }}
        command:
          - /bin/sh
          - -ec
          - |
            version="$(date -u +%Y%m%dT%H%M%SZ)"
            echo "retrain: candidate ${CXR_RETRAIN_NAME} version ${version}"
            python -m training run --data "${CXR_RETRAIN_DATA}" --output-dir /runs --run-name "${version}" \
              --store "${CXR_RETRAIN_STORE}" --name "${CXR_RETRAIN_NAME}" --version "${version}" "$@"
            if [ -n "${CXR_RETRAIN_EVAL_DATA}" ]; then
              set -- --eval-data "${CXR_RETRAIN_EVAL_DATA}"
            else
              set --
            fi
            python -m training publish --store "${CXR_RETRAIN_STORE}" --name "${CXR_RETRAIN_NAME}" \
              --version "${version}" "$@"
          - retrain
        {{- with .Values.retrain.trainArgs }}
        args:
          {{- toYaml . | nindent 10 }}
        {{- end }}
        env:
          - name: CXR_RETRAIN_STORE
            value: {{ include "cxr-triage.modelStorePath" . | quote }}
          - name: CXR_RETRAIN_NAME
            value: {{ .Values.config.modelName | quote }}
          - name: CXR_RETRAIN_DATA
            value: {{ printf "/data/%s" .Values.retrain.data.trainPath | clean | quote }}
          - name: CXR_RETRAIN_EVAL_DATA
            value: {{ if .Values.retrain.data.evalPath }}{{ printf "/data/%s" .Values.retrain.data.evalPath | clean | quote }}{{ else }}""{{ end }}
          # The root filesystem is read-only: caches (torch, matplotlib) go to /tmp.
          - name: HOME
            value: /tmp
          - name: XDG_CACHE_HOME
            value: /tmp/.cache
          - name: MPLCONFIGDIR
            value: /tmp/matplotlib
          {{- with .Values.retrain.extraEnv }}
          {{- toYaml . | nindent 10 }}
          {{- end }}
        securityContext:
          {{- include "cxr-triage.containerSecurityContext" . | nindent 10 }}
        resources:
          {{- include "cxr-triage.resourcesWithGpu" (dict "resources" .Values.retrain.resources "gpu" .Values.retrain.gpu) | nindent 10 }}
        volumeMounts:
          - name: models
            mountPath: {{ include "cxr-triage.modelStorePath" . }}
          - name: data
            mountPath: /data
            readOnly: true
          - name: runs
            mountPath: /runs
          - name: tmp
            mountPath: /tmp
          - name: dshm
            mountPath: /dev/shm
    volumes:
      - name: models
        persistentVolumeClaim:
          claimName: {{ include "cxr-triage.modelClaimName" . }}
      - name: data
        persistentVolumeClaim:
          claimName: {{ .Values.retrain.data.existingClaim }}
          readOnly: true
      - name: runs
        {{- if .Values.retrain.runs.existingClaim }}
        persistentVolumeClaim:
          claimName: {{ .Values.retrain.runs.existingClaim }}
        {{- else }}
        emptyDir:
          sizeLimit: {{ .Values.retrain.runs.sizeLimit }}
        {{- end }}
      - name: tmp
        emptyDir:
          sizeLimit: {{ .Values.tmpSizeLimit }}
      - name: dshm
        emptyDir:
          medium: Memory
          sizeLimit: {{ .Values.retrain.shmSizeLimit }}
{{- end }}
