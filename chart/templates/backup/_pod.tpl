{{/* The backup Pod template, shared by the CronJob and the pre-upgrade hook Job. */}}
{{- define "k8s-lab.backup.podTemplate" -}}
metadata:
  labels:
    {{- include "k8s-lab.labels" (dict "root" . "component" "backup") | nindent 4 }}
spec:
  restartPolicy: Never
  automountServiceAccountToken: false
  securityContext:
    runAsNonRoot: true
    runAsUser: 999
    runAsGroup: 999
    seccompProfile:
      type: RuntimeDefault
  initContainers:
    # The host's backup directory is root-owned when kubelet creates it; hand it to uid 999.
    - name: backup-dir-owner
      image: {{ include "k8s-lab.backup.image" . }}
      imagePullPolicy: {{ .Values.imagePullPolicy }}
      command:
        - sh
        - -c
        - '[ "$(stat -c %u:%g /backups)" = 999:999 ] || chown 999:999 /backups'
      securityContext:
        runAsNonRoot: false
        runAsUser: 0
        runAsGroup: 0
        allowPrivilegeEscalation: false
        capabilities:
          drop:
            - ALL
          add:
            - CHOWN
      resources:
        requests:
          cpu: 10m
          memory: 16Mi
        limits:
          cpu: 100m
          memory: 64Mi
      volumeMounts:
        - name: backups
          mountPath: /backups
  containers:
    - name: mysqldump
      image: {{ include "k8s-lab.backup.image" . }}
      imagePullPolicy: {{ .Values.imagePullPolicy }}
      command:
        - bash
        - -c
        - |
          {{- .Files.Get "files/backup.sh" | trimSuffix "\n" | nindent 10 }}
      env:
        - name: DATABASE_HOST
          value: database
        - name: DATABASE_PORT
          value: {{ .Values.database.servicePort | quote }}
        - name: BACKUP_KEEP
          value: {{ .Values.backup.keep | quote }}
        - name: MYSQL_PWD
          valueFrom:
            secretKeyRef:
              name: {{ include "k8s-lab.database.secretName" . }}
              key: root-password
      securityContext:
        allowPrivilegeEscalation: false
        capabilities:
          drop:
            - ALL
      resources:
        {{- toYaml .Values.backup.resources | nindent 8 }}
      volumeMounts:
        - name: backups
          mountPath: /backups
  volumes:
    - name: backups
      hostPath:
        path: {{ .Values.backup.hostPath }}
        type: DirectoryOrCreate
{{- end -}}
