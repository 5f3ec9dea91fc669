#!/usr/bin/env bash
# Single-node Apache Kafka in KRaft mode for ecpds: install | start | stop | status.
# Jars come from Maven Central through infra/kafka/pom.xml; data lives under $ECPDS_VAR/kafka.
# The node itself (configuration, storage, launch, stop) is lib.sh's, shared with cluster.sh.
# start is idempotent: a broker already running from this data dir is fine.
#
# ECPDS_KAFKA_SECURITY picks the client listener, as it does for the clients (bus/settings.py):
#   plaintext (default)  PLAINTEXT on 127.0.0.1
#   sasl_ssl             SASL_SSL on 127.0.0.1: TLS with a self-signed certificate for
#                        127.0.0.1/localhost (server.crt, the clients' ECPDS_KAFKA_CA by default)
#                        and SCRAM-SHA-512; the one user, ECPDS_KAFKA_USER (default ecpds), is
#                        created when the storage is formatted, with the password in
#                        ECPDS_KAFKA_PASSWORD_FILE (generated 0600 if missing). No authorizer:
#                        whoever signs in may do everything, and only ecpds can sign in.
# The controller listener stays PLAINTEXT on 127.0.0.1 either way. The security a data dir was
# formatted with is kept in it: starting it with the other one is refused (the SCRAM user exists
# only in storage formatted with it).
set -euo pipefail
source "$(dirname "$0")/../env.sh"
source "$(dirname "$0")/lib.sh"
DATA="$ECPDS_VAR/kafka"
LOG="$ECPDS_VAR/log/kafka.log"
SECURITY="${ECPDS_KAFKA_SECURITY:-plaintext}"
SECRETS="$ECPDS_VAR/secrets/kafka"
SCRAM_USER="${ECPDS_KAFKA_USER:-ecpds}"
PASSWORD_FILE="${ECPDS_KAFKA_PASSWORD_FILE:-$SECRETS/password}"
PYTHON="${ECPDS_PYTHON:-$ECPDS_ROOT/.venv/bin/python}"
case "$SECURITY" in plaintext | sasl_ssl) ;; *) die "ECPDS_KAFKA_SECURITY: must be plaintext or sasl_ssl, got '$SECURITY'" ;; esac

# a PEM file as one properties value: its lines joined by the escape \n
pem_value() { awk 'BEGIN { ORS = "" } { print $0 "\\n" }' "$1"; }

# the certificate, its key and the SCRAM password, made once (bus/tls.py, bus/private.py: 0600
# files in a 0700 directory); an existing password file is kept, and checked to fit the configs
secure_files() {
  (cd "$ECPDS_ROOT" && "$PYTHON" -c '
import secrets, sys
from pathlib import Path
from bus.private import create_private
from bus.tls import ensure_self_signed
folder, password = Path(sys.argv[1]), Path(sys.argv[2])
ensure_self_signed(folder / "server.crt", folder / "server.key")
create_private(password, secrets.token_urlsafe(24) + "\n")
' "$SECRETS" "$PASSWORD_FILE") || die "could not write the broker's certificate or password under $SECRETS"
  PASSWORD=$(tr -d '[:space:]' <"$PASSWORD_FILE")
  [[ "$PASSWORD" =~ ^[A-Za-z0-9._~-]+$ ]] \
    || die "ECPDS_KAFKA_PASSWORD_FILE: the local broker takes letters, digits and ._~- only"
  [[ "$SCRAM_USER" =~ ^[A-Za-z0-9._-]+$ ]] || die "ECPDS_KAFKA_USER: letters, digits and ._- only"
}

listener_properties() {
  if [ "$SECURITY" = plaintext ]; then
    cat <<PROPS
listeners=PLAINTEXT://127.0.0.1:$ECPDS_KAFKA_PORT,CONTROLLER://127.0.0.1:$ECPDS_KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$ECPDS_KAFKA_PORT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
PROPS
    return
  fi
  # the key goes in the properties (a PEM key file would have to be encrypted), so they are 0600
  cat <<PROPS
listeners=SASL_SSL://127.0.0.1:$ECPDS_KAFKA_PORT,CONTROLLER://127.0.0.1:$ECPDS_KAFKA_CONTROLLER_PORT
advertised.listeners=SASL_SSL://127.0.0.1:$ECPDS_KAFKA_PORT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL
inter.broker.listener.name=SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$SCRAM_USER" password="$PASSWORD";
ssl.keystore.type=PEM
ssl.keystore.certificate.chain=$(pem_value "$SECRETS/server.crt")
ssl.keystore.key=$(pem_value "$SECRETS/server.key")
ssl.truststore.type=PEM
ssl.truststore.certificates=$(pem_value "$SECRETS/server.crt")
PROPS
}

# lib.sh writes a plaintext node; with sasl_ssl its listener lines are replaced (the file holds
# the key then, so it is 0600)
secure_listeners() {
  [ "$SECURITY" = sasl_ssl ] || return 0
  secure_files
  local props="$DATA/server.properties"
  chmod 600 "$props"
  grep -v -E '^(listeners|advertised\.listeners|listener\.security\.protocol\.map|inter\.broker\.listener\.name)=' \
    "$props" >"$props.new"
  listener_properties >>"$props.new"
  chmod 600 "$props.new"
  mv "$props.new" "$props"
}

start() {
  if kafka_alive "$DATA"; then echo "kafka: already running (pid $(cat "$DATA/kafka.pid")) on 127.0.0.1:$ECPDS_KAFKA_PORT"; return 0; fi
  port_in_use "$ECPDS_KAFKA_PORT" && die "port $ECPDS_KAFKA_PORT is in use by another program: stop it or set ECPDS_KAFKA_PORT"
  port_in_use "$ECPDS_KAFKA_CONTROLLER_PORT" && die "port $ECPDS_KAFKA_CONTROLLER_PORT is in use: set ECPDS_KAFKA_CONTROLLER_PORT"
  kafka_install
  (umask 077 && kafka_configure "$DATA" 1 "$ECPDS_KAFKA_PORT" "$ECPDS_KAFKA_CONTROLLER_PORT" \
    "1@127.0.0.1:$ECPDS_KAFKA_CONTROLLER_PORT" 1)
  secure_listeners
  if [ ! -f "$DATA/data/meta.properties" ]; then
    local scram=()
    [ "$SECURITY" = sasl_ssl ] && scram=(--add-scram "SCRAM-SHA-512=[name=$SCRAM_USER,password=$PASSWORD]")
    kafka_format "$DATA" "$(kafka_new_cluster_id "$DATA")" "$LOG" "${scram[@]}"
    echo "$SECURITY" >"$DATA/security"
  fi
  local formatted
  formatted=$(cat "$DATA/security" 2>/dev/null || echo plaintext)
  [ "$formatted" = "$SECURITY" ] || die "$DATA was formatted for $formatted, not $SECURITY: \
stop it and remove $DATA (its events go with it), or use another ECPDS_VAR"
  kafka_launch "$DATA" "$ECPDS_KAFKA_HEAP" "$LOG"
  wait_port "$ECPDS_KAFKA_PORT" 60 kafka "$LOG"
  echo "kafka: started (pid $(cat "$DATA/kafka.pid")) on 127.0.0.1:$ECPDS_KAFKA_PORT"
}

stop() {
  if ! kafka_signal "$DATA"; then echo "kafka: not running"; return 0; fi
  kafka_reap "$DATA"
  echo "kafka: stopped"
}

status() {
  if kafka_alive "$DATA" && port_in_use "$ECPDS_KAFKA_PORT"; then echo "kafka: running on 127.0.0.1:$ECPDS_KAFKA_PORT"; else echo "kafka: down"; return 1; fi
}

case "${1:-}" in
  install) kafka_install ;;
  start | stop | status) "$1" ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
