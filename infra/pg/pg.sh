#!/usr/bin/env bash
# Private PostgreSQL cluster for the ecpds read models: install | start | stop | status.
# Data under $ECPDS_VAR/pg, TCP on 127.0.0.1:$ECPDS_PG_PORT only. initdb refuses to run as root,
# so when called as root the server runs as an unprivileged user (postgres, or ecpds created on
# demand). start is idempotent.
#
# Authentication: over TCP every role needs its SCRAM password; the superuser ecpds_admin logs
# in only over a Unix socket in a 0700 directory, by peer (the server's own OS user), and only
# this script uses it. The application role ecpds is no superuser: it may connect to the
# database ecpds and create schemas in it (the read models and a rebuild's shadow schemas, which
# it then owns), nothing more. Its password is generated into $ECPDS_VAR/secrets/pgpass (0600,
# libpq's passfile format, named by the default ECPDS_PG_DSN), and given to the server through
# psql's stdin, never on a command line. A cluster from before this scheme (trust auth, ecpds a
# superuser; no marker file) is recreated: the read models are derived, the projector replays
# the log into the new one.
set -euo pipefail
source "$(dirname "$0")/../env.sh"
DATA="$ECPDS_VAR/pg/data"
LOG="$ECPDS_VAR/log/postgres.log"
SECRETS="$ECPDS_VAR/secrets"
PASSFILE="$SECRETS/pgpass"
MARKER="$DATA/ecpds-auth-scram" # written once the roles and pg_hba.conf of this scheme are set
ADMIN=ecpds_admin

bindir() {
  local d
  for d in /usr/lib/postgresql/*/bin; do [ -x "$d/initdb" ] && { echo "$d"; return 0; }; done
  command -v initdb >/dev/null && { dirname "$(command -v initdb)"; return 0; }
  die "PostgreSQL server binaries are missing: run 'make install' (apt-get install postgresql)"
}

run_user() {
  if [ "$(id -u)" != 0 ]; then echo ""; return 0; fi
  if id postgres >/dev/null 2>&1; then echo postgres; return 0; fi
  id ecpds >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin ecpds
  echo ecpds
}

as_user() { local u; u=$(run_user); if [ -n "$u" ]; then runuser -u "$u" -- "$@"; else "$@"; fi; }

prepare_dir() {
  local u
  u=$(run_user)
  mkdir -p "$ECPDS_VAR/pg"
  if [ -n "$u" ] && ! runuser -u "$u" -- test -x "$ECPDS_VAR/pg"; then
    # a parent directory is closed to the server user: keep the cluster in a private place it
    # can reach, and point var/pg at it
    local alt="/var/tmp/ecpds-pg-$(echo "$ECPDS_VAR" | md5sum | cut -c1-12)"
    mkdir -p "$alt"
    rmdir "$ECPDS_VAR/pg" 2>/dev/null || true
    [ -e "$ECPDS_VAR/pg" ] || ln -s "$alt" "$ECPDS_VAR/pg"
  fi
  [ -n "$u" ] && chown "$u" "$ECPDS_VAR/pg/" && chmod 700 "$ECPDS_VAR/pg/"
  return 0
}

install() { bindir >/dev/null; }

# the private socket directory (a Unix socket path must stay under ~100 bytes)
socket_dir() {
  local d="$ECPDS_VAR/pg/run"
  if [ "${#d}" -gt 80 ]; then d="/tmp/ecpds-pg-$(echo "$ECPDS_VAR" | md5sum | cut -c1-12)"; fi
  echo "$d"
}

os_user() { local u; u=$(run_user); echo "${u:-$(id -un)}"; }

running() {
  [ -f "$DATA/postmaster.pid" ] && as_user "$1/pg_ctl" -D "$DATA" status >/dev/null 2>&1
}

# SQL on stdin, run by the admin over the private socket
admin_sql() { # DB
  as_user "$bin/psql" -h "$(socket_dir)" -p "$ECPDS_PG_PORT" -U "$ADMIN" -d "$1" \
    -v ON_ERROR_STOP=1 -qtA -f -
}

write_auth_files() {
  as_user tee "$DATA/pg_hba.conf" >/dev/null <<HBA
# written by infra/pg/pg.sh: the admin by peer over the private socket, every role by password
# over TCP; nothing else gets in
local all $ADMIN peer map=admin
host  all all 127.0.0.1/32 scram-sha-256
HBA
  as_user tee "$DATA/pg_ident.conf" >/dev/null <<IDENT
admin $(os_user) $ADMIN
IDENT
}

# the application role's password: kept in the passfile, created once
app_password() {
  mkdir -p -m 700 "$SECRETS"
  if [ ! -s "$PASSFILE" ]; then
    (umask 077; printf '*:*:*:ecpds:%s\n' "$(head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')" >"$PASSFILE")
  fi
  chmod 600 "$PASSFILE"
  cut -d: -f5- "$PASSFILE" | head -n1
}

# the roles and grants of this scheme; safe to run again (start runs it every time)
set_roles() {
  local pw
  pw=$(app_password)
  # the password travels on psql's stdin; an error must not copy the statement into the log
  admin_sql postgres <<SQL
SET log_min_error_statement = panic;
SET log_statement = 'none';
SELECT format('CREATE ROLE ecpds LOGIN')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ecpds') \\gexec
ALTER ROLE ecpds LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
  PASSWORD '$pw';
SELECT 'CREATE DATABASE ecpds OWNER $ADMIN'
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'ecpds') \\gexec
REVOKE ALL ON DATABASE ecpds FROM PUBLIC;
GRANT CONNECT, CREATE, TEMPORARY ON DATABASE ecpds TO ecpds;
SQL
}

start() {
  local bin sock note=""
  bin=$(bindir)
  if running "$bin"; then
    if [ -f "$MARKER" ]; then
      [ -s "$PASSFILE" ] || set_roles || die "PostgreSQL roles could not be set; see $LOG"
      echo "postgres: already running on 127.0.0.1:$ECPDS_PG_PORT"; return 0
    fi
    as_user "$bin/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null 2>&1 || true # an older cluster
  fi
  port_in_use "$ECPDS_PG_PORT" && die "port $ECPDS_PG_PORT is in use by another program: stop it or set ECPDS_PG_PORT"
  prepare_dir
  if [ -f "$DATA/PG_VERSION" ] && [ ! -f "$MARKER" ]; then
    # trust auth, and ecpds its bootstrap superuser (PostgreSQL 16 on refuses to demote that
    # one); the read models are derived from the log, so start afresh, keeping the old files
    rm -rf "$DATA.pre-scram"
    mv "$DATA" "$DATA.pre-scram"
    note=" (recreated with password authentication; the old cluster is in $DATA.pre-scram)"
  fi
  if [ ! -f "$DATA/PG_VERSION" ]; then
    # trust only until the first start: pg_hba.conf is rewritten below before the server runs
    as_user "$bin/initdb" -D "$DATA" -U "$ADMIN" --auth=trust -E UTF8 --locale=C.UTF-8 >>"$LOG.init" 2>&1 \
      || as_user "$bin/initdb" -D "$DATA" -U "$ADMIN" --auth=trust -E UTF8 --no-locale >>"$LOG.init" 2>&1 \
      || die "initdb failed; see $LOG.init"
    cat >>"$DATA/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
password_encryption = 'scram-sha-256'
fsync = on
synchronous_commit = on
shared_buffers = 256MB
max_connections = 200
CONF
  fi
  write_auth_files
  sock=$(socket_dir)
  mkdir -p "$sock"; chmod 700 "$sock"; [ -n "$(run_user)" ] && chown "$(run_user)" "$sock"
  touch "$LOG"; [ -n "$(run_user)" ] && chown "$(run_user)" "$LOG"
  as_user "$bin/pg_ctl" -D "$DATA" -l "$LOG" -o "-p $ECPDS_PG_PORT -k $sock" -w -t 60 start >/dev/null \
    || die "PostgreSQL did not start; see $LOG"
  set_roles || die "PostgreSQL roles could not be set; see $LOG"
  as_user touch "$MARKER"
  echo "postgres: started on 127.0.0.1:$ECPDS_PG_PORT$note"
}

stop() {
  local bin
  bin=$(bindir)
  if [ -f "$DATA/postmaster.pid" ]; then
    as_user "$bin/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null 2>&1 || true
  fi
  echo "postgres: stopped"
}

status() {
  local bin
  bin=$(bindir)
  if running "$bin"; then
    echo "postgres: running on 127.0.0.1:$ECPDS_PG_PORT"
  else echo "postgres: down"; return 1; fi
}

case "${1:-}" in
  install | start | stop | status) "$1" ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
