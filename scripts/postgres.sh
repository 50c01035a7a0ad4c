#!/usr/bin/env bash
# Makes sure a PostgreSQL server answers at MAILROOM_TEST_DATABASE_URL
# (default postgres://postgres@127.0.0.1:5432/test) for the tests.
#
# - Something already answers and lets us in: use it (create the database if needed).
# - Else: install Debian's postgresql when initdb is missing (apt, as root or
#   with sudo), make a cluster with initdb in a folder outside the repo
#   (MAILROOM_PG_DIR, default /var/tmp/mailroom-pg), trust auth on loopback
#   only, and start it with pg_ctl. A second run reuses the cluster.
set -euo pipefail

URL="${MAILROOM_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
DIR="${MAILROOM_PG_DIR:-/var/tmp/mailroom-pg}"

re='^postgres(ql)?://([^:@/]+)(:[^@/]*)?@([^:/]+)(:([0-9]+))?/([^?]+)'
if [[ ! "$URL" =~ $re ]]; then
  echo "postgres.sh: MAILROOM_TEST_DATABASE_URL must look like postgres://USER@HOST:PORT/DB" >&2
  exit 2
fi
USER_NAME="${BASH_REMATCH[2]}"
HOST="${BASH_REMATCH[4]}"
PORT="${BASH_REMATCH[6]:-5432}"
DB="${BASH_REMATCH[7]}"
case "$HOST" in
  127.0.0.1|localhost|::1) ;;
  *) echo "postgres.sh: $HOST is not loopback; start that server yourself" >&2; exit 2 ;;
esac

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "postgres.sh: need root (or sudo) for: $*" >&2; exit 1
  fi
}

pg_bin() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1
}

admin() { # runs SQL against the maintenance database
  psql "postgres://$USER_NAME@$HOST:$PORT/postgres" -v ON_ERROR_STOP=1 -tAq "$@"
}

ensure_db() {
  if ! admin -c "SELECT 1 FROM pg_database WHERE datname = '$DB'" | grep -q 1; then
    admin -c "CREATE DATABASE \"$DB\""
  fi
  # A role that must give its password (pg_hba below), for the wrong-password test.
  if ! admin -c "SELECT 1 FROM pg_roles WHERE rolname = 'mailroom_pw_check'" | grep -q 1; then
    admin -c "CREATE ROLE mailroom_pw_check LOGIN PASSWORD 'right-password'"
  fi
  psql "$URL" -tAqc 'SELECT 1' >/dev/null
  echo "postgres.sh: PostgreSQL ready at $URL"
}

run_pg() { # initdb and pg_ctl refuse to run as root
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# Everyone is trusted on loopback but the password-check role, which must
# give its password (the first matching line wins). Only in our own cluster.
ensure_hba() {
  local line="host all mailroom_pw_check 127.0.0.1/32 scram-sha-256"
  [ -f "$DIR/pg_hba.conf" ] || return 0
  if ! grep -qF "$line" "$DIR/pg_hba.conf"; then
    run_pg sh -c "{ echo '$line'; cat '$DIR/pg_hba.conf'; } > '$DIR/pg_hba.conf.new' && mv '$DIR/pg_hba.conf.new' '$DIR/pg_hba.conf'"
    run_pg "$(pg_bin)/pg_ctl" -D "$DIR" reload >/dev/null 2>&1 || true
    sleep 1
  fi
}

# TLS with a certificate for localhost and 127.0.0.1 from a CA made here, so
# the tests can check that sslmode=require works and that the certificate is
# verified; the CA's copy in $CA is what they trust. Only in our own cluster.
CA="${MAILROOM_TEST_PG_CA:-/var/tmp/mailroom-pg-ca.crt}"
ensure_tls() {
  [ -f "$DIR/PG_VERSION" ] || return 0
  if [ ! -f "$DIR/test-ca.crt" ]; then
    local tmp
    tmp="$(mktemp -d)"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=Mailroom test CA" \
      -keyout "$tmp/ca.key" -out "$tmp/ca.crt" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj /CN=localhost \
      -keyout "$tmp/server.key" -out "$tmp/server.csr" 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' > "$tmp/ext"
    openssl x509 -req -in "$tmp/server.csr" -CA "$tmp/ca.crt" -CAkey "$tmp/ca.key" \
      -CAcreateserial -days 3650 -extfile "$tmp/ext" -out "$tmp/server.crt" 2>/dev/null
    install -m 0600 "$tmp/server.key" "$DIR/server.key"
    install -m 0644 "$tmp/server.crt" "$DIR/server.crt"
    install -m 0644 "$tmp/ca.crt" "$DIR/test-ca.crt"
    rm -rf "$tmp"
    if [ "$(id -u)" = 0 ]; then chown postgres: "$DIR/server.key" "$DIR/server.crt" "$DIR/test-ca.crt"; fi
    admin -c "SELECT pg_reload_conf()" >/dev/null 2>&1 || true
  fi
  cp "$DIR/test-ca.crt" "$CA" && chmod 0644 "$CA"
  if [ "$(admin -c 'SHOW ssl')" != on ]; then
    admin -c "ALTER SYSTEM SET ssl = on" && admin -c "SELECT pg_reload_conf()" >/dev/null
    sleep 1
  fi
}

if command -v psql >/dev/null && admin -c 'SELECT 1' >/dev/null 2>&1; then
  ensure_hba
  ensure_tls
  ensure_db
  exit 0
fi

installed_now=0
if [ -z "$(pg_bin)" ] || [ ! -x "$(pg_bin)/initdb" ]; then
  echo "postgres.sh: installing Debian's postgresql (about a minute)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  installed_now=1
fi
BIN="$(pg_bin)"

# The package may have started its own cluster on our port with password
# auth; on a machine where we installed it just now, that one gives way.
if [ "$installed_now" = 1 ] && command -v pg_lsclusters >/dev/null; then
  pg_lsclusters -h 2>/dev/null | while read -r ver name port status _; do
    if [ "$port" = "$PORT" ] && [ "$status" = online ]; then
      as_root pg_ctlcluster "$ver" "$name" stop || true
    fi
  done
fi

if [ ! -f "$DIR/PG_VERSION" ]; then
  mkdir -p "$DIR"
  if [ "$(id -u)" = 0 ]; then chown postgres: "$DIR"; fi
  chmod 0700 "$DIR"
  run_pg "$BIN/initdb" -D "$DIR" -U "$USER_NAME" --auth-local=trust --auth-host=trust \
    --encoding=UTF8 --locale=C.UTF-8 >/dev/null
fi

ensure_hba
if ! run_pg "$BIN/pg_ctl" -D "$DIR" status >/dev/null 2>&1; then
  if pg_isready -h "$HOST" -p "$PORT" -q 2>/dev/null; then
    echo "postgres.sh: another server answers at $HOST:$PORT but refuses $USER_NAME without a password;" >&2
    echo "  set MAILROOM_TEST_DATABASE_URL to a database the tests may use" >&2
    exit 1
  fi
  run_pg "$BIN/pg_ctl" -D "$DIR" -l "$DIR/server.log" -w -t 60 \
    -o "-c listen_addresses=$HOST -p $PORT -k $DIR -c max_connections=200" start >/dev/null
fi
ensure_tls
ensure_db
