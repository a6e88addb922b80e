set -euo pipefail
stamp=$(date -u +%Y%m%dT%H%M%SZ)
out="/backups/k8s-lab-${stamp}.sql.gz"
echo "dumping all databases from ${DATABASE_HOST}:${DATABASE_PORT} to ${out}"
mysqldump --host="${DATABASE_HOST}" --port="${DATABASE_PORT}" --protocol=tcp --user=root \
  --all-databases --single-transaction --routines --events --hex-blob \
  | gzip -c > "${out}.partial"
gzip -t "${out}.partial"
mv "${out}.partial" "${out}"
echo "wrote ${out} ($(wc -c < "${out}") bytes)"
# Keep the newest BACKUP_KEEP dumps of this kind (k8s-lab-<UTC stamp>.sql.gz); other files stay.
ls -1t /backups/k8s-lab-[0-9]*Z.sql.gz | tail -n "+$((BACKUP_KEEP + 1))" | xargs -r rm -f --
