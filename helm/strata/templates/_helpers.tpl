{{/* Names and labels. */}}
{{- define "strata.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "strata.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else if contains (include "strata.name" .) .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "strata.name" .) | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Selector labels; call with (dict "root" $ "component" "ingester"). */}}
{{- define "strata.selectorLabels" -}}
app.kubernetes.io/name: {{ include "strata.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "strata.labels" -}}
{{ include "strata.selectorLabels" . }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: strata
{{- end -}}

{{- define "strata.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Values that cannot work together fail the render with a message. */}}
{{- define "strata.validate" -}}
{{- if not (has .Values.mode (list "monolithic" "distributed")) -}}
{{- fail (printf "mode must be monolithic or distributed, not %q" (toString .Values.mode)) -}}
{{- end -}}
{{- if and .Values.etcd.enabled (eq (mod (int .Values.etcd.replicas) 2) 0) -}}
{{- fail (printf "etcd.replicas must be odd (1 or 3), not %v" .Values.etcd.replicas) -}}
{{- end -}}
{{- if and (not .Values.etcd.enabled) (empty .Values.etcd.externalEndpoints) -}}
{{- fail "etcd.enabled=false needs etcd.externalEndpoints (host:port list)" -}}
{{- end -}}
{{- $ingesters := ternary .Values.monolithic.replicas .Values.ingester.replicas (eq .Values.mode "monolithic") | int -}}
{{- if lt $ingesters (int .Values.replicationFactor) -}}
{{- fail (printf "%d ingesting replicas cannot hold replicationFactor=%v copies: add replicas or lower replicationFactor" $ingesters .Values.replicationFactor) -}}
{{- end -}}
{{- with .Values.ingester.zones -}}
{{- if ne (mod (int $.Values.ingester.replicas) (len .)) 0 -}}
{{- fail (printf "ingester.replicas (%v) must be a multiple of the number of ingester.zones (%d)" $.Values.ingester.replicas (len .)) -}}
{{- end -}}
{{- if eq $.Values.mode "monolithic" -}}
{{- if ne (mod (int $.Values.monolithic.replicas) (len .)) 0 -}}
{{- fail (printf "monolithic.replicas (%v) must be a multiple of the number of ingester.zones (%d)" $.Values.monolithic.replicas (len .)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and .Values.objectStorage.enabled (not .Values.objectStorage.s3.credentialsSecret) -}}
{{- fail "objectStorage.enabled=true needs objectStorage.s3.credentialsSecret (a Secret with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)" -}}
{{- end -}}
{{- end -}}

{{/* The etcd endpoints Strata's ring uses, as a YAML flow list. */}}
{{- define "strata.etcdEndpoints" -}}
{{- if .Values.etcd.enabled -}}
{{- $fullname := include "strata.fullname" . -}}
{{- $eps := list -}}
{{- range $i := until (int .Values.etcd.replicas) -}}
{{- $eps = append $eps (printf "%s-etcd-%d.%s-etcd-headless.%s.svc:2379" $fullname $i $fullname $.Release.Namespace) -}}
{{- end -}}
{{- toJson $eps -}}
{{- else -}}
{{- toJson .Values.etcd.externalEndpoints -}}
{{- end -}}
{{- end -}}

{{/*
The Strata config file (docs/configuration.md). ${VAR}s are filled in by
`-config.expand-env` from each pod's environment (POD_NAME, POD_IP, and the S3
credentials). The target and the zone are flags, set per workload.
*/}}
{{- define "strata.baseConfig" -}}
server:
  http_listen_address: 0.0.0.0
  http_listen_port: 9009
  grpc_listen_address: 0.0.0.0
  grpc_listen_port: 9095
  log_level: {{ .Values.logLevel }}
  log_format: {{ .Values.logFormat }}
{{- if .Values.haTracker.enabled }}
distributor:
  ha_tracker:
    enable_ha_tracker: true
    ha_tracker_failover_timeout: {{ .Values.haTracker.failoverTimeout }}
limits:
  accept_ha_samples: true
  ha_cluster_label: {{ .Values.haTracker.clusterLabel | quote }}
  ha_replica_label: {{ .Values.haTracker.replicaLabel | quote }}
{{- end }}
ingester:
  ring:
    kvstore:
      store: etcd
      prefix: strata/
      etcd:
        endpoints: {{ include "strata.etcdEndpoints" . }}
    replication_factor: {{ int .Values.replicationFactor }}
    instance_id: ${POD_NAME}
    instance_addr: ${POD_IP}:9095
    tokens_file_path: /data/tokens
    zone_awareness_enabled: {{ not (empty .Values.ingester.zones) }}
blocks_storage:
  tsdb:
    dir: /data/tsdb
  bucket_store:
    sync_dir: /data/tsdb-sync
{{- if .Values.objectStorage.enabled }}
  backend: s3
  s3:
    endpoint: {{ .Values.objectStorage.s3.endpoint | quote }}
    bucket_name: {{ .Values.objectStorage.s3.bucket | quote }}
    region: {{ .Values.objectStorage.s3.region | quote }}
    insecure: {{ .Values.objectStorage.s3.insecure }}
    access_key_id: ${AWS_ACCESS_KEY_ID}
    secret_access_key: ${AWS_SECRET_ACCESS_KEY}
{{- else }}
  # Trials only: each ingester keeps its blocks on its own PVC.
  backend: filesystem
  filesystem:
    dir: /data/blocks
{{- end }}
compactor:
  data_dir: /data/compactor
{{- end -}}

{{- define "strata.config" -}}
{{- $base := include "strata.baseConfig" . | fromYaml -}}
{{- toYaml (mustMergeOverwrite $base (deepCopy .Values.structuredConfig)) -}}
{{- end -}}

{{/* The strata container; call with (dict "root" $ "target" "ingester" "resources" ... "zone" "" "data" true). */}}
{{- define "strata.container" -}}
{{- $root := .root -}}
- name: strata
  image: {{ include "strata.image" $root }}
  imagePullPolicy: {{ $root.Values.image.pullPolicy }}
  args:
    - -target={{ .target }}
    - -config.file=/etc/strata/strata.yaml
    - -config.expand-env
    {{- with .zone }}
    - -ingester.ring.instance_availability_zone={{ . }}
    {{- end }}
  env:
    - name: POD_NAME
      valueFrom:
        fieldRef: {fieldPath: metadata.name}
    - name: POD_IP
      valueFrom:
        fieldRef: {fieldPath: status.podIP}
    {{- if $root.Values.objectStorage.enabled }}
    - name: AWS_ACCESS_KEY_ID
      valueFrom:
        secretKeyRef: {name: {{ $root.Values.objectStorage.s3.credentialsSecret }}, key: AWS_ACCESS_KEY_ID}
    - name: AWS_SECRET_ACCESS_KEY
      valueFrom:
        secretKeyRef: {name: {{ $root.Values.objectStorage.s3.credentialsSecret }}, key: AWS_SECRET_ACCESS_KEY}
    {{- end }}
  ports:
    - {name: http, containerPort: 9009, protocol: TCP}
    - {name: grpc, containerPort: 9095, protocol: TCP}
  readinessProbe:
    httpGet: {path: /ready, port: http}
    initialDelaySeconds: 5
    periodSeconds: 10
    timeoutSeconds: 2
    failureThreshold: 3
  resources:
    {{- toYaml .resources | nindent 4 }}
  securityContext:
    allowPrivilegeEscalation: false
    readOnlyRootFilesystem: true
    capabilities: {drop: [ALL]}
  workingDir: /data
  volumeMounts:
    - {name: config, mountPath: /etc/strata, readOnly: true}
    - {name: data, mountPath: /data}
    - {name: tmp, mountPath: /tmp}
{{- end -}}

{{/* Pod-level fields shared by every strata workload; same arguments as strata.container. */}}
{{- define "strata.podSpec" -}}
{{- $root := .root -}}
securityContext:
  {{- toYaml $root.Values.podSecurityContext | nindent 2 }}
terminationGracePeriodSeconds: {{ .terminationGracePeriodSeconds }}
containers:
  {{- include "strata.container" . | nindent 2 }}
volumes:
  - name: config
    configMap: {name: {{ include "strata.fullname" $root }}-config}
  - name: tmp
    emptyDir: {}
  {{- if not .persistent }}
  - name: data
    emptyDir: {}
  {{- end }}
{{- end -}}

{{/* Pod annotations that roll the pods when the config changes. */}}
{{- define "strata.podAnnotations" -}}
checksum/config: {{ include "strata.config" . | sha256sum }}
{{- end -}}

{{/*
A StatefulSet of ingesting pods (monolithic `-target=all` or `-target=ingester`),
with its WAL volume, anti-affinity, zone spread and long termination grace.
Call with (dict "root" $ "component" "ingester" "name" "<sts name>" "target" "ingester"
"replicas" 3 "resources" {...} "zone" "").
*/}}
{{- define "strata.statefulset" -}}
{{- $root := .root -}}
{{- $ing := $root.Values.ingester -}}
{{- $sel := dict "root" $root "component" .component -}}
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: {{ .name }}
  labels:
    {{- include "strata.labels" $sel | nindent 4 }}
    {{- with .zone }}
    strata.io/zone: {{ . }}
    {{- end }}
spec:
  replicas: {{ int .replicas }}
  serviceName: {{ include "strata.fullname" $root }}-{{ .component }}-headless
  # Ingesters start together (the ring needs them all); updates go one at a time.
  podManagementPolicy: Parallel
  updateStrategy:
    type: RollingUpdate
  selector:
    matchLabels:
      {{- include "strata.selectorLabels" $sel | nindent 6 }}
      {{- with .zone }}
      strata.io/zone: {{ . }}
      {{- end }}
  template:
    metadata:
      labels:
        {{- include "strata.labels" $sel | nindent 8 }}
        {{- with .zone }}
        strata.io/zone: {{ . }}
        {{- end }}
      annotations:
        {{- include "strata.podAnnotations" $root | nindent 8 }}
    spec:
      {{- include "strata.podSpec" (merge (dict "terminationGracePeriodSeconds" $ing.terminationGracePeriodSeconds "persistent" $ing.persistence.enabled) .) | nindent 6 }}
      affinity:
        {{- with .zone }}
        nodeAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
            nodeSelectorTerms:
              - matchExpressions:
                  - {key: topology.kubernetes.io/zone, operator: In, values: [{{ . | quote }}]}
        {{- end }}
        podAntiAffinity:
          {{- if eq $ing.podAntiAffinity "hard" }}
          requiredDuringSchedulingIgnoredDuringExecution:
            - topologyKey: kubernetes.io/hostname
              labelSelector:
                matchLabels:
                  {{- include "strata.selectorLabels" $sel | nindent 18 }}
          {{- else }}
          preferredDuringSchedulingIgnoredDuringExecution:
            - weight: 100
              podAffinityTerm:
                topologyKey: kubernetes.io/hostname
                labelSelector:
                  matchLabels:
                    {{- include "strata.selectorLabels" $sel | nindent 20 }}
          {{- end }}
      topologySpreadConstraints:
        - maxSkew: 1
          topologyKey: topology.kubernetes.io/zone
          whenUnsatisfiable: ScheduleAnyway
          labelSelector:
            matchLabels:
              {{- include "strata.selectorLabels" $sel | nindent 14 }}
  {{- if $ing.persistence.enabled }}
  persistentVolumeClaimRetentionPolicy:
    whenDeleted: Retain
    whenScaled: Retain
  volumeClaimTemplates:
    - metadata:
        name: data
      spec:
        accessModes: [ReadWriteOnce]
        {{- with $ing.persistence.storageClass }}
        storageClassName: {{ . }}
        {{- end }}
        resources:
          requests:
            storage: {{ $ing.persistence.size }}
  {{- end }}
{{- end -}}

{{/*
A StatefulSet with a scratch/cache PVC at /data (store-gateway index-headers,
compactor work space); call with (dict "root" $ "component" "store-gateway"
"values" .Values.storeGateway), values holding replicas, resources, persistence.
*/}}
{{- define "strata.storageStatefulset" -}}
{{- $root := .root -}}
{{- $v := .values -}}
{{- $sel := dict "root" $root "component" .component -}}
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: {{ include "strata.fullname" $root }}-{{ .component }}
  labels:
    {{- include "strata.labels" $sel | nindent 4 }}
spec:
  replicas: {{ int $v.replicas }}
  serviceName: {{ include "strata.fullname" $root }}-{{ .component }}-headless
  podManagementPolicy: Parallel
  updateStrategy:
    type: RollingUpdate
  selector:
    matchLabels:
      {{- include "strata.selectorLabels" $sel | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "strata.labels" $sel | nindent 8 }}
      annotations:
        {{- include "strata.podAnnotations" $root | nindent 8 }}
    spec:
      {{- include "strata.podSpec" (dict "root" $root "target" .component "resources" $v.resources "terminationGracePeriodSeconds" 60 "persistent" true) | nindent 6 }}
      topologySpreadConstraints:
        - maxSkew: 1
          topologyKey: kubernetes.io/hostname
          whenUnsatisfiable: ScheduleAnyway
          labelSelector:
            matchLabels:
              {{- include "strata.selectorLabels" $sel | nindent 14 }}
  persistentVolumeClaimRetentionPolicy:
    whenDeleted: Delete
    whenScaled: Delete
  volumeClaimTemplates:
    - metadata:
        name: data
      spec:
        accessModes: [ReadWriteOnce]
        {{- with $v.persistence.storageClass }}
        storageClassName: {{ . }}
        {{- end }}
        resources:
          requests:
            storage: {{ $v.persistence.size }}
{{- end -}}

{{/* A stateless Deployment (distributor, querier); call with (dict "root" $ "component" "querier"). */}}
{{- define "strata.deployment" -}}
{{- $root := .root -}}
{{- $v := index $root.Values .component -}}
{{- $sel := dict "root" $root "component" .component -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "strata.fullname" $root }}-{{ .component }}
  labels:
    {{- include "strata.labels" $sel | nindent 4 }}
spec:
  replicas: {{ int $v.replicas }}
  strategy:
    type: RollingUpdate
    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}
  selector:
    matchLabels:
      {{- include "strata.selectorLabels" $sel | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "strata.labels" $sel | nindent 8 }}
      annotations:
        {{- include "strata.podAnnotations" $root | nindent 8 }}
    spec:
      {{- include "strata.podSpec" (dict "root" $root "target" .component "resources" $v.resources "terminationGracePeriodSeconds" 60 "persistent" false) | nindent 6 }}
      topologySpreadConstraints:
        - maxSkew: 1
          topologyKey: kubernetes.io/hostname
          whenUnsatisfiable: ScheduleAnyway
          labelSelector:
            matchLabels:
              {{- include "strata.selectorLabels" $sel | nindent 14 }}
{{- end -}}

{{/* A Service; call with (dict "root" $ "component" "querier" "name" "<name>" "headless" false "scrape" true). */}}
{{- define "strata.service" -}}
{{- $sel := dict "root" .root "component" .component -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ .name }}
  labels:
    {{- include "strata.labels" $sel | nindent 4 }}
    {{- if not .scrape }}
    # Scraped through the other Service of these pods, not twice.
    prometheus.io/service-monitor: "false"
    {{- end }}
spec:
  {{- if .headless }}
  type: ClusterIP
  clusterIP: None
  publishNotReadyAddresses: true
  {{- else }}
  type: ClusterIP
  {{- end }}
  ports:
    - {name: http, port: 9009, targetPort: http, protocol: TCP}
    - {name: grpc, port: 9095, targetPort: grpc, protocol: TCP}
  selector:
    {{- include "strata.selectorLabels" $sel | nindent 4 }}
{{- end -}}

{{/* A PodDisruptionBudget allowing one pod down at a time; same arguments as strata.service. */}}
{{- define "strata.pdb" -}}
{{- $sel := dict "root" .root "component" .component -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "strata.fullname" .root }}-{{ .component }}
  labels:
    {{- include "strata.labels" $sel | nindent 4 }}
spec:
  maxUnavailable: 1
  selector:
    matchLabels:
      {{- include "strata.selectorLabels" $sel | nindent 6 }}
{{- end -}}
