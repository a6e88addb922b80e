{{/*
Names and labels shared by every template.

Object names are fixed per component (web, database, ...) so that the chart renders exactly the
objects in manifests/; labels follow the app.kubernetes.io/* recommendations.
*/}}

{{- define "k8s-lab.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "k8s-lab.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Selector labels: what Deployments, StatefulSets and Services select on. They never change for the
life of a release (no version, no chart label), because a workload's selector is immutable.
Call with (dict "root" $ "component" "web"); "component" may be omitted.
*/}}
{{- define "k8s-lab.selectorLabels" -}}
app.kubernetes.io/name: {{ include "k8s-lab.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end -}}

{{/* All labels of an object or Pod template: the selector labels plus descriptive ones. */}}
{{- define "k8s-lab.labels" -}}
{{ include "k8s-lab.selectorLabels" . }}
app.kubernetes.io/part-of: k8s-lab
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ include "k8s-lab.chart" .root }}
{{- end -}}

{{/* The labels that let a Pod through the database's NetworkPolicy as a web Pod. */}}
{{- define "k8s-lab.webPeerLabels" -}}
app.kubernetes.io/name: {{ include "k8s-lab.name" . }}
app.kubernetes.io/component: web
{{- end -}}

{{- define "k8s-lab.backupPeerLabels" -}}
app.kubernetes.io/name: {{ include "k8s-lab.name" . }}
app.kubernetes.io/component: backup
{{- end -}}

{{/* The Secret that holds the database credentials. */}}
{{- define "k8s-lab.database.secretName" -}}
{{- .Values.database.auth.existingSecret | default "database-credentials" -}}
{{- end -}}

{{- define "k8s-lab.database.config" -}}
{{- .Values.database.config | default (.Files.Get "files/my.cnf") -}}
{{- end -}}

{{- define "k8s-lab.web.nginxConfig" -}}
{{- .Values.web.nginxConfig | default (.Files.Get "files/default.conf") -}}
{{- end -}}

{{- define "k8s-lab.backup.image" -}}
{{- .Values.backup.image | default .Values.database.image -}}
{{- end -}}

{{/* The node affinity that pins the database and its volume to the database node. */}}
{{- define "k8s-lab.databaseNodeSelectorTerms" -}}
nodeSelectorTerms:
  - matchExpressions:
      - key: {{ .Values.databaseNodeLabel.key }}
        operator: In
        values:
          - {{ .Values.databaseNodeLabel.value | quote }}
{{- end -}}

{{/*
Pod Security Admission labels of the namespace: "restricted", enforced, warned and audited.
`lab deploy --helm` puts them on the namespace before installing (helm --create-namespace makes
it without labels, and the release cannot own the namespace that holds its records).
*/}}
{{- define "k8s-lab.podSecurityLabels" -}}
pod-security.kubernetes.io/enforce: restricted
pod-security.kubernetes.io/enforce-version: latest
pod-security.kubernetes.io/warn: restricted
pod-security.kubernetes.io/warn-version: latest
pod-security.kubernetes.io/audit: restricted
pod-security.kubernetes.io/audit-version: latest
{{- end -}}

{{/* Egress rules shared by the network policies: DNS, and the database's port. */}}
{{- define "k8s-lab.dnsEgress" -}}
- to:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: kube-system
      podSelector:
        matchLabels:
          k8s-app: kube-dns
  ports:
    - protocol: UDP
      port: 53
    - protocol: TCP
      port: 53
{{- end -}}

{{- define "k8s-lab.databaseEgress" -}}
- to:
    - podSelector:
        matchLabels:
          {{- include "k8s-lab.selectorLabels" (dict "root" . "component" "database") | nindent 10 }}
  ports:
    - protocol: TCP
      port: 3306
{{- end -}}
