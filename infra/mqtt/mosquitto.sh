#!/usr/bin/env bash
# External MQTT broker (Debian mosquitto, MQTT 3.1.1 and 5) for when ECPDS_MQTT_BROKER=mosquitto:
# start | stop | status. The default broker is the embedded amqtt one, started in-process by
# `ecpds up`; this script is only for the external choice and for MQTT 5 tests.
# Subscriber auth: when $ECPDS_VAR/mosquitto/acl exists (made by
# `python -m consumers.notifier.subscribers write [--anonymous-read]` from the configuration),
# data users sign in and read only their destinations' topics; the notifier keeps both files in
# step with the configuration and sends SIGHUP, on which mosquitto rereads them.
set -euo pipefail
source "$(dirname "$0")/../env.sh"
DATA="$ECPDS_VAR/mosquitto"
PID="$DATA/mosquitto.pid"
LOG="$ECPDS_VAR/log/mosquitto.log"

start() {
  if pid_alive "$PID"; then echo "mosquitto: already running on 127.0.0.1:$ECPDS_MQTT_PORT"; return 0; fi
  command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || die "mosquitto is missing: run 'make install'"
  port_in_use "$ECPDS_MQTT_PORT" && die "port $ECPDS_MQTT_PORT is in use: stop it or set ECPDS_MQTT_PORT"
  mkdir -p "$DATA"
  # set_tcp_nodelay: with Nagle's algorithm on (mosquitto's default) each PUBACK waits for the
  # client's delayed ACK, up to 40 ms, and the notifier awaits every PUBACK (bench/wis2.py)
  cat >"$DATA/mosquitto.conf" <<CONF
listener $ECPDS_MQTT_PORT 127.0.0.1
set_tcp_nodelay true
allow_anonymous true
persistence false
log_dest stdout
CONF
  if [ -f "$DATA/acl" ] && [ -f "$DATA/passwd" ]; then
    # anonymous clients get only what the ACL grants them before its first user line; the files
    # are 0600, so mosquitto keeps their owner's account (started as root it would switch)
    printf 'password_file %s\nacl_file %s\nuser %s\n' "$DATA/passwd" "$DATA/acl" "$(id -un)" \
      >>"$DATA/mosquitto.conf"
  fi
  local bin; bin=$(command -v mosquitto || echo /usr/sbin/mosquitto)
  nohup "$bin" -c "$DATA/mosquitto.conf" >>"$LOG" 2>&1 &
  echo $! >"$PID"
  wait_port "$ECPDS_MQTT_PORT" 10 mosquitto "$LOG"
  echo "mosquitto: started on 127.0.0.1:$ECPDS_MQTT_PORT"
}

stop() {
  if pid_alive "$PID"; then kill "$(cat "$PID")"; fi
  rm -f "$PID"; echo "mosquitto: stopped"
}

status() { if pid_alive "$PID"; then echo "mosquitto: running on 127.0.0.1:$ECPDS_MQTT_PORT"; else echo "mosquitto: down"; return 1; fi; }

case "${1:-}" in
  start | stop | status) "$1" ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
