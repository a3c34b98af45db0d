#!/bin/sh
# First start: make the data directory, set the root password, create MARIADB_DATABASE and
# MARIADB_USER (passwords from *_FILE, as the chart mounts them) and a healthcheck user.
set -eu
datadir=/var/lib/mysql
socket=/run/mysqld/mysqld.sock

secret() { # $1: value, $2: file holding the value; single quotes doubled for SQL
  if [ -n "$2" ]; then value=$(cat "$2"); else value=$1; fi
  printf %s "$value" | sed "s/'/''/g"
}

if [ ! -d "$datadir/mysql" ]; then
  root_password=$(secret "${MARIADB_ROOT_PASSWORD:-}" "${MARIADB_ROOT_PASSWORD_FILE:-}")
  password=$(secret "${MARIADB_PASSWORD:-}" "${MARIADB_PASSWORD_FILE:-}")
  health_password=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
  mariadb-install-db --datadir="$datadir" --auth-root-authentication-method=normal --skip-test-db >/dev/null
  mariadbd --datadir="$datadir" --skip-networking --socket="$socket.init" &
  pid=$!
  for _ in $(seq 60); do mariadb-admin --socket="$socket.init" -uroot ping >/dev/null 2>&1 && break; sleep 0.5; done
  mariadb --socket="$socket.init" -uroot <<SQL
ALTER USER 'root'@'localhost' IDENTIFIED BY '$root_password';
CREATE DATABASE IF NOT EXISTS \`${MARIADB_DATABASE}\`;
CREATE USER '${MARIADB_USER}'@'%' IDENTIFIED BY '$password';
GRANT ALL ON \`${MARIADB_DATABASE}\`.* TO '${MARIADB_USER}'@'%';
CREATE USER 'healthcheck'@'localhost' IDENTIFIED BY '$health_password';
FLUSH PRIVILEGES;
SQL
  printf '[mariadb-client]\nuser=healthcheck\npassword=%s\nsocket=%s\n' "$health_password" "$socket" \
    > "$datadir/.my-healthcheck.cnf"
  kill "$pid"
  wait "$pid" || true
fi
exec mariadbd --datadir="$datadir" --bind-address=0.0.0.0 --port=3306 --socket="$socket" --skip-name-resolve "$@"
