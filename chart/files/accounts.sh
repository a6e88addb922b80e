# k8s-lab database accounts: least privilege. Sourced by the image's entrypoint (official mysql
# image and k8s-lab/mariadb alike) once, when it initializes an empty data directory, after it
# has made root@localhost (MYSQL_ROOT_HOST=localhost) and the application user with ALL on the
# lab database. Passwords come from the mounted Secret, never from the environment.
credentials=/etc/k8s-lab/database-credentials
sql_quote() { printf "'%s'" "$(printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e "s/'/\\\\'/g")"; }
app_user=$(sql_quote "$(cat "$credentials/username")")
backup_user=$(sql_quote "$(cat "$credentials/backup-username")")
backup_password=$(sql_quote "$(cat "$credentials/backup-password")")
docker_process_sql <<SQL
-- The application reads and writes the lab's tables; it cannot drop them or the database,
-- and has no rights on any other schema (mysql included).
REVOKE ALL PRIVILEGES ON \`${MYSQL_DATABASE}\`.* FROM ${app_user}@'%';
GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, ALTER, INDEX, CREATE VIEW, SHOW VIEW,
      CREATE TEMPORARY TABLES, LOCK TABLES, REFERENCES ON \`${MYSQL_DATABASE}\`.* TO ${app_user}@'%';
-- Backups read everything mysqldump dumps (tables, views, triggers, events, routines) and
-- can change nothing.
CREATE USER ${backup_user}@'%' IDENTIFIED BY ${backup_password};
GRANT SELECT, SHOW VIEW, TRIGGER, EVENT, LOCK TABLES ON *.* TO ${backup_user}@'%';
FLUSH PRIVILEGES;
SQL
