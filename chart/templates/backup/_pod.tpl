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
        - name: POD_NAMESPACE
          valueFrom:
            fieldRef:
              fieldPath: metadata.namespace
        # The read-only backup account, not root.
        - name: DATABASE_USER
          valueFrom:
            secretKeyRef:
              name: {{ include "k8s-lab.database.secretName" . }}
              key: backup-username
        - name: MYSQL_PWD
          valueFrom:
            secretKeyRef:
              name: {{ include "k8s-lab.database.secretName" . }}
              key: backup-password
      securityContext:
        allowPrivilegeEscalation: false
        readOnlyRootFilesystem: true
        capabilities:
          drop:
            - ALL
      resources:
        {{- toYaml .Values.backup.resources | nindent 8 }}
      volumeMounts:
        - name: backups
          mountPath: /backups
        - name: tmp
          mountPath: /tmp
  volumes:
    # The claim binds to the PersistentVolume of the host's backup directory.
    - name: backups
      persistentVolumeClaim:
        claimName: database-backups
    - name: tmp
      emptyDir:
        sizeLimit: 64Mi
{{- end -}}
