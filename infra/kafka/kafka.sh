#!/usr/bin/env bash
# Single-node Apache Kafka in KRaft mode for ecpds: install | start | stop | status.
# Jars come from Maven Central through infra/kafka/pom.xml; data lives under $ECPDS_VAR/kafka.
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
DATA="$ECPDS_VAR/kafka"
PID="$DATA/kafka.pid"
LOG="$ECPDS_VAR/log/kafka.log"
SECURITY="${ECPDS_KAFKA_SECURITY:-plaintext}"
SECRETS="$ECPDS_VAR/secrets/kafka"
SCRAM_USER="${ECPDS_KAFKA_USER:-ecpds}"
PASSWORD_FILE="${ECPDS_KAFKA_PASSWORD_FILE:-$SECRETS/password}"
PYTHON="${ECPDS_PYTHON:-$ECPDS_ROOT/.venv/bin/python}"
case "$SECURITY" in plaintext | sasl_ssl) ;; *) die "ECPDS_KAFKA_SECURITY: must be plaintext or sasl_ssl, got '$SECURITY'" ;; esac

install() {
  if ls "$KAFKA_LIBS"/kafka_2.13-*.jar >/dev/null 2>&1; then return 0; fi
  command -v java >/dev/null || die "Java is missing: run 'make install' (apt-get install openjdk-17-jre-headless)"
  command -v mvn >/dev/null || die "Maven is missing: run 'make install' (apt-get install maven)"
  echo "ecpds infra: resolving Kafka jars from Maven Central into $KAFKA_LIBS"
  mvn -q -B -f "$ECPDS_ROOT/infra/kafka/pom.xml" -Dkafka.libs="$KAFKA_LIBS" dependency:copy-dependencies \
    || die "Maven could not resolve Kafka (see output above)"
}

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

configure() {
  mkdir -p "$DATA/data"
  [ "$SECURITY" = sasl_ssl ] && secure_files
  (umask 077 && cat >"$DATA/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$ECPDS_KAFKA_CONTROLLER_PORT
controller.listener.names=CONTROLLER
$(listener_properties)
log.dirs=$DATA/data
num.partitions=4
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
log.retention.hours=168
log.segment.bytes=268435456
log.cleaner.min.compaction.lag.ms=0
message.max.bytes=10485760
PROPS
  )
  cat >"$DATA/log4j.properties" <<PROPS
log4j.rootLogger=WARN, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.server.KafkaServer=INFO
log4j.logger.kafka.server.BrokerServer=INFO
PROPS
}

# a broker of this data dir whose pid file went missing (killed wrapper, cleaned var/) is adopted
adopt() {
  local pid
  pid=$(pgrep -f "kafka.Kafka $DATA/server.properties" | head -n 1 || true)
  [ -n "$pid" ] && echo "$pid" >"$PID"
  return 0
}

java_run() { java -Xmx"$ECPDS_KAFKA_HEAP" -Xms256m -XX:+UseG1GC -Djava.awt.headless=true \
  -Dlog4j.configuration="file:$DATA/log4j.properties" -cp "$KAFKA_LIBS/*" "$@"; }

start() {
  pid_alive "$PID" || adopt
  if pid_alive "$PID"; then echo "kafka: already running (pid $(cat "$PID")) on 127.0.0.1:$ECPDS_KAFKA_PORT"; return 0; fi
  port_in_use "$ECPDS_KAFKA_PORT" && die "port $ECPDS_KAFKA_PORT is in use by another program: stop it or set ECPDS_KAFKA_PORT"
  port_in_use "$ECPDS_KAFKA_CONTROLLER_PORT" && die "port $ECPDS_KAFKA_CONTROLLER_PORT is in use: set ECPDS_KAFKA_CONTROLLER_PORT"
  install
  configure
  if [ ! -f "$DATA/data/meta.properties" ]; then
    local id scram=()
    id=$(java_run kafka.tools.StorageTool random-uuid | tail -n 1)
    [ "$SECURITY" = sasl_ssl ] && scram=(--add-scram "SCRAM-SHA-512=[name=$SCRAM_USER,password=$PASSWORD]")
    java_run kafka.tools.StorageTool format -t "$id" -c "$DATA/server.properties" "${scram[@]}" >>"$LOG" 2>&1 \
      || die "formatting Kafka storage failed; see $LOG"
    echo "$SECURITY" >"$DATA/security"
  fi
  local formatted
  formatted=$(cat "$DATA/security" 2>/dev/null || echo plaintext)
  [ "$formatted" = "$SECURITY" ] || die "$DATA was formatted for $formatted, not $SECURITY: \
stop it and remove $DATA (its events go with it), or use another ECPDS_VAR"
  nohup java -Xmx"$ECPDS_KAFKA_HEAP" -Xms256m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
    -Dlog4j.configuration="file:$DATA/log4j.properties" -cp "$KAFKA_LIBS/*" \
    kafka.Kafka "$DATA/server.properties" >>"$LOG" 2>&1 &
  echo $! >"$PID"
  wait_port "$ECPDS_KAFKA_PORT" 60 kafka "$LOG"
  echo "kafka: started (pid $(cat "$PID")) on 127.0.0.1:$ECPDS_KAFKA_PORT"
}

stop() {
  pid_alive "$PID" || adopt
  if ! pid_alive "$PID"; then rm -f "$PID"; echo "kafka: not running"; return 0; fi
  local pid i
  pid=$(cat "$PID")
  kill "$pid"
  for ((i = 0; i < 300; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
  rm -f "$PID"
  echo "kafka: stopped"
}

status() {
  pid_alive "$PID" || adopt
  if pid_alive "$PID" && port_in_use "$ECPDS_KAFKA_PORT"; then echo "kafka: running on 127.0.0.1:$ECPDS_KAFKA_PORT"; else echo "kafka: down"; return 1; fi
}

case "${1:-}" in
  install | start | stop | status) "$1" ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
