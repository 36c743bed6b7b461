{{/* Names, labels and the arithmetic every template shares. */}}

{{- define "bmc-emulator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The StatefulSet's name; pod names append "-<ordinal>", so leave room for it. */}}
{{- define "bmc-emulator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "bmc-emulator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "bmc-emulator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "bmc-emulator.labels" -}}
{{ include "bmc-emulator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: bmc
{{- if .Values.helmLabels }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}
{{- end }}

{{- define "bmc-emulator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "bmc-emulator.secretName" -}}
{{- default (printf "%s-credentials" (include "bmc-emulator.fullname" .)) .Values.credentials.existingSecret }}
{{- end }}

{{/* Nodes a pod serves at most: ceil(nodes / shards). */}}
{{- define "bmc-emulator.nodesPerPod" -}}
{{- $f := .Values.fleet }}
{{- div (add (int $f.nodes) (int $f.shards) -1) (int $f.shards) }}
{{- end }}

{{/* The memory request in MiB: sizing.baseMiB + sizing.perNodeKiB x nodes per pod. */}}
{{- define "bmc-emulator.memoryMiB" -}}
{{- $perPod := int (include "bmc-emulator.nodesPerPod" .) }}
{{- add (int .Values.sizing.baseMiB) (div (add (mul (int .Values.sizing.perNodeKiB) $perPod) 1023) 1024) }}
{{- end }}

{{/* IPv4 `base` + `index` (dict "base" "10.0.0.250" "index" 10 -> 10.0.1.4), like the
     emulator's --address-base. */}}
{{- define "bmc-emulator.nthAddress" -}}
{{- $o := splitList "." .base }}
{{- $n := add (mul (atoi (index $o 0)) 16777216) (mul (atoi (index $o 1)) 65536) (mul (atoi (index $o 2)) 256) (atoi (index $o 3)) .index }}
{{- if gt $n 4294967295 }}
{{- fail (printf "perBmcLoadBalancer.addressBase %s + node index %d is past 255.255.255.255" .base (int .index)) }}
{{- end }}
{{- printf "%d.%d.%d.%d" (div $n 16777216) (mod (div $n 65536) 256) (mod (div $n 256) 256) (mod $n 256) }}
{{- end }}

{{/* Refuse values that would deploy a fleet the emulator refuses, or pods with no node. */}}
{{- define "bmc-emulator.validate" -}}
{{- $f := .Values.fleet }}
{{- if lt (int $f.shards) 1 }}
{{- fail "fleet.shards must be at least 1" }}
{{- end }}
{{- if and (not (hasKey $f.config "nodes")) (gt (int $f.shards) (int $f.nodes)) }}
{{- fail (printf "fleet.shards (%d) is more than fleet.nodes (%d): some pods would serve no node" (int $f.shards) (int $f.nodes)) }}
{{- end }}
{{- $ipmiLast := add (int $f.ipmiPortBase) (int $f.nodes) -1 }}
{{- $redfishLast := add (int $f.redfishPortBase) (int $f.nodes) -1 }}
{{- if or (gt $ipmiLast 65535) (gt $redfishLast 65535) }}
{{- fail (printf "fleet.nodes (%d) does not fit the port ranges: node k listens on ipmiPortBase+k and redfishPortBase+k, at most 65535" (int $f.nodes)) }}
{{- end }}
{{- if and (le (int $f.ipmiPortBase) $redfishLast) (le (int $f.redfishPortBase) $ipmiLast) }}
{{- fail (printf "the IPMI ports %d-%d and the Redfish ports %d-%d overlap" (int $f.ipmiPortBase) $ipmiLast (int $f.redfishPortBase) $redfishLast) }}
{{- end }}
{{- if and .Values.perBmcLoadBalancer.enabled (not .Values.perBmcLoadBalancer.addressBase) }}
{{- fail "perBmcLoadBalancer.addressBase is required: node k gets addressBase + k" }}
{{- end }}
{{- if and (or .Values.perPodServices.enabled .Values.perBmcLoadBalancer.enabled) (hasKey $f.config "nodes") }}
{{- fail "perPodServices and perBmcLoadBalancer assume the generated node list (node k on the port bases + k): leave `nodes:` out of fleet.config" }}
{{- end }}
{{- end }}
