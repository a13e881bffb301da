{{/* The chart's name, and the release's full name (both at most 63 characters). */}}
{{- define "asyncflow.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "asyncflow.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "asyncflow.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "asyncflow.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "asyncflow.selectorLabels" -}}
app.kubernetes.io/name: {{ include "asyncflow.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "asyncflow.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | trunc 63 | trimSuffix "-" }}
{{ include "asyncflow.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "asyncflow.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "asyncflow.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "asyncflow.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* Environment shared by the pipeline and the status page: the journal, then the user's. */}}
{{- define "asyncflow.env" -}}
- name: ASYNCFLOW_JOURNAL
{{- if .Values.journal.existingSecret }}
  valueFrom:
    secretKeyRef:
      name: {{ .Values.journal.existingSecret }}
      key: {{ .Values.journal.key }}
{{- else if .Values.journal.url }}
  value: {{ .Values.journal.url | quote }}
{{- else }}
  value: {{ .Values.journal.path | quote }}
{{- end }}
{{- range $name, $value := .Values.env }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- range .Values.secretEnv }}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ .secret }}
      key: {{ .key }}
{{- end }}
{{- end }}

{{- define "asyncflow.envFrom" -}}
{{- range .Values.envFromSecrets }}
- secretRef:
    name: {{ . }}
{{- end }}
{{- end }}

{{- define "asyncflow.volumes" -}}
- name: data
{{- if .Values.persistence.enabled }}
  persistentVolumeClaim:
    claimName: {{ .Values.persistence.existingClaim | default (include "asyncflow.fullname" .) }}
{{- else }}
  emptyDir: {}
{{- end }}
- name: tmp
  emptyDir: {}
{{- end }}

{{- define "asyncflow.volumeMounts" -}}
- name: data
  mountPath: /data
- name: tmp
  mountPath: /tmp
{{- end }}

{{/* The pod that runs the pipeline once: the CronJob's and the Job's. */}}
{{- define "asyncflow.runPod" -}}
metadata:
  labels:
    {{- include "asyncflow.selectorLabels" . | nindent 4 }}
    app.kubernetes.io/component: run
  {{- with .Values.podAnnotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  restartPolicy: Never
  serviceAccountName: {{ include "asyncflow.serviceAccountName" . }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  containers:
    - name: run
      image: {{ include "asyncflow.image" . | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      workingDir: /data
      args:
        - run
        - {{ required "run.task is required (MODULE:Task)" .Values.run.task | quote }}
        {{- range .Values.run.args }}
        - {{ . | toString | quote }}
        {{- end }}
        - --workers
        - {{ .Values.run.workers | toString | quote }}
        {{- if .Values.run.resources }}
        - --resources
        - {{ include "asyncflow.resourcePools" . | quote }}
        {{- end }}
      env:
        {{- include "asyncflow.env" . | nindent 8 }}
      {{- with .Values.envFromSecrets }}
      envFrom:
        {{- include "asyncflow.envFrom" $ | nindent 8 }}
      {{- end }}
      resources:
        {{- toYaml .Values.run.podResources | nindent 8 }}
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      volumeMounts:
        {{- include "asyncflow.volumeMounts" . | nindent 8 }}
  volumes:
    {{- include "asyncflow.volumes" . | nindent 4 }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{/* run.resources as the command line wants them: memory_gb=64,db=2 */}}
{{- define "asyncflow.resourcePools" -}}
{{- $pools := list }}
{{- range $name, $amount := .Values.run.resources }}
{{- $pools = append $pools (printf "%s=%v" $name $amount) }}
{{- end }}
{{- join "," $pools }}
{{- end }}
