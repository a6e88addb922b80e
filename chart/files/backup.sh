set -euo pipefail
# A dump of every user database (never the mysql schema: accounts come from the Secret), in the
# format of `lab backup create`: k8s-lab-<stamp>.sql.gz plus k8s-lab-<stamp>.meta.json with its
# sha256, sizes, and per table the row count and CHECKSUM TABLE, so `lab backup restore latest`
# and `lab backup verify` trust and check it. Runs as the read-only backup account.
stamp=$(date -u +%Y%m%dT%H%M%SZ)
out="/backups/k8s-lab-${stamp}.sql.gz"
meta="/backups/k8s-lab-${stamp}.meta.json"
partial="/backups/.k8s-lab-${stamp}.sql.gz.partial"
# Nothing half-written stays: this run's temporary files on any exit, and those of runs that
# were killed (older than a day; `lab backup create` names its own the same way).
trap 'rm -f "${partial}" "${meta}.partial"' EXIT
find /backups -maxdepth 1 -name '.k8s-lab-*.partial' -mmin +1440 -delete
q() {
  mysql --host="${DATABASE_HOST}" --port="${DATABASE_PORT}" --protocol=tcp --user="${DATABASE_USER}" \
    --batch --skip-column-names --default-character-set=utf8mb4 "$@"
}
lit() { local s=${1//\\/\\\\}; printf "'%s'" "${s//\'/\'\'}"; }
json() { local s=${1//\\/\\\\}; printf '"%s"' "${s//\"/\\\"}"; }
mapfile -t databases < <(q -e "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME
  NOT IN ('mysql', 'sys', 'information_schema', 'performance_schema') ORDER BY 1")
[ "${#databases[@]}" -gt 0 ] || { echo "no user databases to back up" >&2; exit 1; }
in_list=$(for d in "${databases[@]}"; do lit "$d"; printf ,; done)
in_list=${in_list%,}
tables="" data_bytes=0
while IFS=$'\t' read -r schema table bytes; do
  ident="\`${schema//\`/\`\`}\`.\`${table//\`/\`\`}\`"
  rows=$(q -e "SELECT COUNT(*) FROM ${ident}")
  checksum=$(q -e "CHECKSUM TABLE ${ident}" | cut -f2)
  [ "${checksum}" != NULL ] || checksum=null
  tables+="${tables:+, }{\"database\": $(json "$schema"), \"table\": $(json "$table"), \"rows\": ${rows}, \"checksum\": ${checksum}, \"data_bytes\": ${bytes}}"
  data_bytes=$((data_bytes + bytes))
done < <(q -e "SELECT TABLE_SCHEMA, TABLE_NAME, COALESCE(DATA_LENGTH, 0) + COALESCE(INDEX_LENGTH, 0)
  FROM information_schema.TABLES WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA IN (${in_list}) ORDER BY 1, 2")
objects="" names=""
for d in "${databases[@]}"; do
  read -r views routines triggers events < <(q -e "SELECT
    (SELECT COUNT(*) FROM information_schema.VIEWS WHERE TABLE_SCHEMA = $(lit "$d")),
    (SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = $(lit "$d")),
    (SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = $(lit "$d")),
    (SELECT COUNT(*) FROM information_schema.EVENTS WHERE EVENT_SCHEMA = $(lit "$d"))")
  objects+="${objects:+, }$(json "$d"): {\"views\": ${views}, \"routines\": ${routines}, \"triggers\": ${triggers}, \"events\": ${events}}"
  names+="${names:+, }$(json "$d")"
done
echo "dumping ${databases[*]} from ${DATABASE_HOST}:${DATABASE_PORT} to ${out}"
options=(--single-transaction --routines --triggers --events --hex-blob --default-character-set=utf8mb4
  --no-tablespaces --add-drop-database)
mysqldump --host="${DATABASE_HOST}" --port="${DATABASE_PORT}" --protocol=tcp --user="${DATABASE_USER}" \
  "${options[@]}" --databases "${databases[@]}" | gzip -6 -c > "${partial}"
gzip -t "${partial}"
gzip -dc "${partial}" | tail -c 512 | grep -q -- '-- Dump completed' \
  || { echo "the dump does not end with mysqldump's '-- Dump completed' line" >&2; exit 1; }
size=$(wc -c < "${partial}")
uncompressed=$(gzip -dc "${partial}" | wc -c)
sha256=$(sha256sum "${partial}" | cut -d' ' -f1)
opts=$(for o in "${options[@]}"; do json "$o"; printf ', '; done)
cat > "${meta}.partial" <<JSON
{"format": 1, "file": "$(basename "${out}")", "created": "$(date -u +%Y-%m-%dT%H:%M:%S+00:00)",
 "namespace": $(json "${POD_NAMESPACE}"), "pod": $(json "${HOSTNAME}"), "server_version": $(json "$(q -e 'SELECT VERSION()')"),
 "database": null, "databases": [${names}], "tables": [${tables}], "objects": {${objects}},
 "sizes": {"compressed_bytes": ${size}, "uncompressed_bytes": ${uncompressed}, "data_bytes": ${data_bytes}},
 "durations": {"total_s": ${SECONDS}}, "sha256": "${sha256}", "mysqldump_options": [${opts%, }],
 "gzip_level": 6, "verifications": [], "made_by": "cronjob"}
JSON
mv "${meta}.partial" "${meta}"
mv "${partial}" "${out}"
echo "wrote ${out} (${size} bytes, sha256 ${sha256})"
# Keep the newest BACKUP_KEEP dumps of this kind (k8s-lab-<UTC stamp>.sql.gz) and their
# metadata; other files stay.
ls -1t /backups/k8s-lab-[0-9]*Z.sql.gz | tail -n "+$((BACKUP_KEEP + 1))" | while read -r old; do
  rm -f -- "${old}" "${old%.sql.gz}.meta.json"
done
