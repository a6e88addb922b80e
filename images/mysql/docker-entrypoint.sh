#!/usr/bin/env bash
# Entrypoint of k8s-lab/mariadb:lab, written for the lab: it follows the documented contract of
# the official mysql image so that manifests work unchanged with either image.
#
#   MYSQL_ROOT_PASSWORD | MYSQL_ALLOW_EMPTY_PASSWORD | MYSQL_RANDOM_ROOT_PASSWORD  (first start)
#   MYSQL_ROOT_HOST (default %)   MYSQL_DATABASE   MYSQL_USER + MYSQL_PASSWORD
#   any of them as NAME_FILE=/path (e.g. a mounted Secret) instead of NAME=value
#   /docker-entrypoint-initdb.d/*.sh *.sql *.sql.gz *.sql.xz *.sql.zst, in name order, first start only
#
# A first start is one whose data directory has no "mysql" system schema yet. The server itself
# always ends up as PID 1 (exec), running as user mysql (uid 999).
set -Eeuo pipefail
shopt -s nullglob

log() {
	local level=$1
	shift
	printf '%s [%s] [Entrypoint]: %s\n' "$(date -u '+%Y-%m-%dT%H:%M:%SZ')" "$level" "$*"
}
note() { log Note "$@"; }
warn() { log Warn "$@" >&2; }
die() {
	log ERROR "$@" >&2
	exit 1
}

# file_env NAME [DEFAULT]: export NAME from $NAME or from the file that $NAME_FILE names.
file_env() {
	local name=$1 file_name="${1}_FILE" default=${2:-}
	local value=$default
	if [ -n "${!name:-}" ] && [ -n "${!file_name:-}" ]; then
		die "both $name and $file_name are set; use only one of them"
	fi
	if [ -n "${!name:-}" ]; then
		value=${!name}
	elif [ -n "${!file_name:-}" ]; then
		[ -r "${!file_name}" ] || die "$file_name=${!file_name}: the file cannot be read"
		value=$(<"${!file_name}")
	fi
	export "$name=$value"
	unset "$file_name"
}

is_true() {
	case "${1:-}" in
	'' | 0 | no | No | NO | false | False | FALSE) return 1 ;;
	*) return 0 ;;
	esac
}

# Escape a value for a single-quoted SQL string literal / a backquoted SQL identifier.
sql_string() {
	local s=${1//\\/\\\\}
	printf "'%s'" "${s//\'/\\\'}"
}
sql_ident() { printf '`%s`' "${1//\`/\`\`}"; }

# A [client] section with the root password, handed to clients on a file descriptor so that the
# password never shows up in a process list.
client_options() {
	local pw=${MYSQL_ROOT_PASSWORD:-}
	pw=${pw//\\/\\\\}
	printf '[client]\npassword="%s"\n' "${pw//\"/\\\"}"
}

# mysql_client [ARGS...]: the mysql client as root on the temporary server's socket.
mysql_client() {
	mysql --defaults-extra-file=<(client_options) --protocol=socket -uroot -hlocalhost \
		--socket="$SOCKET" --comments "$@"
}

# docker_process_sql [ARGS...]: run SQL from stdin; in MYSQL_DATABASE when it is set. The name is
# the official image's, so sourced *.sh init scripts written for it work here too.
docker_process_sql() {
	if [ -n "${MYSQL_DATABASE:-}" ]; then
		set -- --database="$MYSQL_DATABASE" "$@"
	fi
	mysql_client "$@"
}

wants_help() {
	local arg
	for arg; do
		case "$arg" in
		-'?' | --help | --print-defaults | -V | --version) return 0 ;;
		esac
	done
	return 1
}

# server_setting NAME ARGS...: the value mysqld would use for a setting, given its arguments.
server_setting() {
	local name=$1
	shift
	"$@" --verbose --help 2>/dev/null | awk -v name="$name" '$1 == name { print $2; exit }'
}

check_config() {
	local out
	if ! out=$("$@" --verbose --help 2>&1 >/dev/null); then
		die "mysqld rejects its configuration: $out"
	fi
}

setup_env() {
	DATADIR=$(server_setting datadir "$@")
	DATADIR=${DATADIR%/}
	SOCKET=$(server_setting socket "$@")
	[ -n "$DATADIR" ] || die "cannot tell the data directory from the configuration"
	[ -n "$SOCKET" ] || SOCKET=/run/mysqld/mysqld.sock
	file_env MYSQL_ROOT_HOST '%'
	file_env MYSQL_DATABASE
	file_env MYSQL_USER
	file_env MYSQL_PASSWORD
	file_env MYSQL_ROOT_PASSWORD
	file_env MYSQL_ALLOW_EMPTY_PASSWORD
	file_env MYSQL_RANDOM_ROOT_PASSWORD
	DATABASE_ALREADY_EXISTS=
	if [ -d "$DATADIR/mysql" ]; then
		DATABASE_ALREADY_EXISTS=true
	fi
}

create_dirs() {
	mkdir -p "$DATADIR" "$(dirname "$SOCKET")" 2>/dev/null || true
	if [ "$(id -u)" = 0 ]; then
		# Only what is not already the server's: a large existing data directory stays untouched.
		find "$DATADIR" \! -user mysql -exec chown mysql:mysql '{}' +
		chown mysql:mysql "$(dirname "$SOCKET")" 2>/dev/null || true
	fi
}

verify_minimum_env() {
	if [ -z "$MYSQL_ROOT_PASSWORD" ] && ! is_true "$MYSQL_ALLOW_EMPTY_PASSWORD" &&
		! is_true "$MYSQL_RANDOM_ROOT_PASSWORD"; then
		die "the database is uninitialized and no password option is set;" \
			"set one of MYSQL_ROOT_PASSWORD (or MYSQL_ROOT_PASSWORD_FILE)," \
			"MYSQL_ALLOW_EMPTY_PASSWORD or MYSQL_RANDOM_ROOT_PASSWORD"
	fi
	if [ "$MYSQL_USER" = root ]; then
		die "MYSQL_USER=root: MYSQL_USER and MYSQL_PASSWORD create a regular user;" \
			"set the root password with MYSQL_ROOT_PASSWORD"
	fi
	if [ -n "$MYSQL_USER" ] && [ -z "$MYSQL_PASSWORD" ]; then
		warn "MYSQL_USER is set but MYSQL_PASSWORD is not: the user will not be created"
	elif [ -z "$MYSQL_USER" ] && [ -n "$MYSQL_PASSWORD" ]; then
		warn "MYSQL_PASSWORD is set but MYSQL_USER is not: it is ignored"
	fi
}

init_database_dir() {
	note "initializing the data directory $DATADIR"
	# "${@:2}": the server's own arguments (e.g. --character-set-server) apply to the system tables.
	mariadb-install-db --datadir="$DATADIR" --rpm --auth-root-authentication-method=normal \
		--skip-test-db --skip-log-bin --default-time-zone=SYSTEM "${@:2}"
	note "data directory initialized"
}

temp_server_start() {
	"$@" --skip-networking --skip-log-bin --default-time-zone=SYSTEM --socket="$SOCKET" \
		--loose-innodb-buffer-pool-load-at-startup=0 --loose-innodb-buffer-pool-dump-at-shutdown=0 &
	TEMP_SERVER_PID=$!
	local i
	for i in $(seq 60); do
		if ! kill -0 "$TEMP_SERVER_PID" 2>/dev/null; then
			wait "$TEMP_SERVER_PID" || true
			die "the temporary server exited during initialization (see the messages above)"
		fi
		if mysqladmin --protocol=socket --socket="$SOCKET" -uroot --connect-timeout=1 ping >/dev/null 2>&1; then
			note "temporary server is up (pid $TEMP_SERVER_PID)"
			return 0
		fi
		sleep 1
	done
	die "the temporary server did not answer within 60 s"
}

temp_server_stop() {
	note "stopping the temporary server"
	kill -TERM "$TEMP_SERVER_PID"
	wait "$TEMP_SERVER_PID" || die "the temporary server did not shut down cleanly"
	note "temporary server stopped"
}

setup_accounts() {
	if is_true "$MYSQL_RANDOM_ROOT_PASSWORD" && [ -z "$MYSQL_ROOT_PASSWORD" ]; then
		MYSQL_ROOT_PASSWORD=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')
		export MYSQL_ROOT_PASSWORD
		note "GENERATED ROOT PASSWORD: $MYSQL_ROOT_PASSWORD"
	fi

	local timezones=
	if [ -z "${MYSQL_INITDB_SKIP_TZINFO:-}" ] && [ -d /usr/share/zoneinfo ]; then
		timezones=$(mariadb-tzinfo-to-sql /usr/share/zoneinfo 2>/dev/null || true)
	fi

	# Accounts that mariadb-install-db makes besides root@localhost (root@127.0.0.1, root@::1,
	# root@<hostname>, anonymous ones) are dropped: root@MYSQL_ROOT_HOST replaces them.
	# (root has no password yet: the client must not send one.)
	local drops user
	mapfile -t drops < <(MYSQL_ROOT_PASSWORD='' mysql_client --batch --skip-column-names -e \
		"SELECT CONCAT(QUOTE(User), '@', QUOTE(Host)) FROM mysql.user
		 WHERE NOT (User = 'root' AND Host = 'localhost')
		   AND User NOT IN ('mariadb.sys', 'mysql.sys', 'mysql.session', 'mysql.infoschema')")

	local root_pw
	root_pw=$(sql_string "$MYSQL_ROOT_PASSWORD")
	{
		echo "SET @@SESSION.SQL_LOG_BIN = 0;"
		[ -z "$timezones" ] || printf 'USE mysql;\n%s\n' "$timezones"
		for user in ${drops[@]+"${drops[@]}"}; do
			echo "DROP USER IF EXISTS $user;"
		done
		echo "ALTER USER 'root'@'localhost' IDENTIFIED BY $root_pw;"
		if [ -n "$MYSQL_ROOT_HOST" ] && [ "$MYSQL_ROOT_HOST" != localhost ]; then
			local host
			host=$(sql_string "$MYSQL_ROOT_HOST")
			echo "CREATE USER 'root'@$host IDENTIFIED BY $root_pw;"
			echo "GRANT ALL PRIVILEGES ON *.* TO 'root'@$host WITH GRANT OPTION;"
		fi
		if [ -n "$MYSQL_DATABASE" ]; then
			echo "CREATE DATABASE IF NOT EXISTS $(sql_ident "$MYSQL_DATABASE");"
		fi
		if [ -n "$MYSQL_USER" ] && [ -n "$MYSQL_PASSWORD" ]; then
			local account
			account="$(sql_string "$MYSQL_USER")@'%'"
			echo "CREATE USER $account IDENTIFIED BY $(sql_string "$MYSQL_PASSWORD");"
			if [ -n "$MYSQL_DATABASE" ]; then
				echo "GRANT ALL PRIVILEGES ON $(sql_ident "${MYSQL_DATABASE//_/\\_}").* TO $account;"
			fi
		fi
		echo "FLUSH PRIVILEGES;"
	} | MYSQL_ROOT_PASSWORD='' mysql_client --database=mysql
	if [ -n "$MYSQL_DATABASE" ]; then
		note "created database $MYSQL_DATABASE"
	fi
	if [ -n "$MYSQL_USER" ] && [ -n "$MYSQL_PASSWORD" ]; then
		note "created user $MYSQL_USER@%"
	fi
}

process_init_files() {
	local f
	for f; do
		case "$f" in
		*.sh)
			if [ -x "$f" ]; then
				note "running $f"
				"$f"
			else
				note "sourcing $f"
				# shellcheck disable=SC1090
				. "$f"
			fi
			;;
		*.sql)
			note "running $f"
			docker_process_sql <"$f"
			;;
		*.sql.gz)
			note "running $f"
			gzip -dc "$f" | docker_process_sql
			;;
		*.sql.xz)
			note "running $f"
			xz -dc "$f" | docker_process_sql
			;;
		*.sql.zst)
			note "running $f"
			zstd -dc "$f" | docker_process_sql
			;;
		*) note "ignoring $f" ;;
		esac
	done
}

main() {
	note "k8s-lab/mariadb:lab entrypoint started: $("$1" --version 2>/dev/null || true)"
	check_config "$@"
	setup_env "$@"
	create_dirs
	if [ "$(id -u)" = 0 ]; then
		note "switching to user mysql"
		exec setpriv --reuid=mysql --regid=mysql --init-groups "${BASH_SOURCE[0]}" "$@"
	fi

	if [ -z "$DATABASE_ALREADY_EXISTS" ]; then
		verify_minimum_env
		# Fail now, not halfway, when the init scripts cannot be read.
		ls /docker-entrypoint-initdb.d/ >/dev/null
		init_database_dir "$@"
		temp_server_start "$@"
		setup_accounts
		process_init_files /docker-entrypoint-initdb.d/*
		temp_server_stop
		note "initialization finished; starting the server"
	else
		note "data directory $DATADIR is initialized already; skipping initialization"
	fi
	unset MYSQL_ROOT_PASSWORD MYSQL_PASSWORD
	exec "$@"
}

# "docker run IMAGE --some-option" means "mysqld --some-option".
if [ "${1:0:1}" = - ]; then
	set -- mysqld "$@"
fi

if { [ "$1" = mysqld ] || [ "$1" = mariadbd ]; } && ! wants_help "$@"; then
	main "$@"
fi
exec "$@"
