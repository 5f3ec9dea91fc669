#!/usr/bin/env bash
# Private PostgreSQL cluster for the ecpds read models: install | start | stop | status.
# Data under $ECPDS_VAR/pg, TCP on 127.0.0.1:$ECPDS_PG_PORT only, trust auth for local
# connections (the cluster is private to this checkout). initdb refuses to run as root, so when
# called as root the server runs as an unprivileged user (postgres, or ecpds created on demand).
# start is idempotent.
set -euo pipefail
source "$(dirname "$0")/../env.sh"
DATA="$ECPDS_VAR/pg/data"
LOG="$ECPDS_VAR/log/postgres.log"

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

start() {
  local bin
  bin=$(bindir)
  if [ -f "$DATA/postmaster.pid" ] && as_user "$bin/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
    echo "postgres: already running on 127.0.0.1:$ECPDS_PG_PORT"; return 0
  fi
  port_in_use "$ECPDS_PG_PORT" && die "port $ECPDS_PG_PORT is in use by another program: stop it or set ECPDS_PG_PORT"
  prepare_dir
  if [ ! -f "$DATA/PG_VERSION" ]; then
    as_user "$bin/initdb" -D "$DATA" -U ecpds --auth=trust -E UTF8 --locale=C.UTF-8 >>"$LOG.init" 2>&1 \
      || as_user "$bin/initdb" -D "$DATA" -U ecpds --auth=trust -E UTF8 --no-locale >>"$LOG.init" 2>&1 \
      || die "initdb failed; see $LOG.init"
    cat >>"$DATA/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
fsync = on
synchronous_commit = on
shared_buffers = 256MB
max_connections = 200
CONF
  fi
  touch "$LOG"; [ -n "$(run_user)" ] && chown "$(run_user)" "$LOG"
  as_user "$bin/pg_ctl" -D "$DATA" -l "$LOG" -o "-p $ECPDS_PG_PORT" -w -t 60 start >/dev/null \
    || die "PostgreSQL did not start; see $LOG"
  # the database ecpds exists once; creating it again is harmless
  as_user "$bin/psql" -h 127.0.0.1 -p "$ECPDS_PG_PORT" -U ecpds -d postgres -qtAc \
    "SELECT 1 FROM pg_database WHERE datname='ecpds'" | grep -q 1 \
    || as_user "$bin/createdb" -h 127.0.0.1 -p "$ECPDS_PG_PORT" -U ecpds ecpds
  echo "postgres: started on 127.0.0.1:$ECPDS_PG_PORT"
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
  if [ -f "$DATA/postmaster.pid" ] && as_user "$bin/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
    echo "postgres: running on 127.0.0.1:$ECPDS_PG_PORT"
  else echo "postgres: down"; return 1; fi
}

case "${1:-}" in
  install | start | stop | status) "$1" ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
