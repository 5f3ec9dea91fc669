#!/usr/bin/env bash
# Single-node Apache Kafka in KRaft mode for ecpds: install | start | stop | status.
# Jars come from Maven Central through infra/kafka/pom.xml; data lives under $ECPDS_VAR/kafka.
# start is idempotent: a broker already running from this data dir is fine.
set -euo pipefail
source "$(dirname "$0")/../env.sh"
DATA="$ECPDS_VAR/kafka"
PID="$DATA/kafka.pid"
LOG="$ECPDS_VAR/log/kafka.log"

install() {
  if ls "$KAFKA_LIBS"/kafka_2.13-*.jar >/dev/null 2>&1; then return 0; fi
  command -v java >/dev/null || die "Java is missing: run 'make install' (apt-get install openjdk-17-jre-headless)"
  command -v mvn >/dev/null || die "Maven is missing: run 'make install' (apt-get install maven)"
  echo "ecpds infra: resolving Kafka jars from Maven Central into $KAFKA_LIBS"
  mvn -q -B -f "$ECPDS_ROOT/infra/kafka/pom.xml" -Dkafka.libs="$KAFKA_LIBS" dependency:copy-dependencies \
    || die "Maven could not resolve Kafka (see output above)"
}

configure() {
  mkdir -p "$DATA/data"
  cat >"$DATA/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$ECPDS_KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$ECPDS_KAFKA_PORT,CONTROLLER://127.0.0.1:$ECPDS_KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$ECPDS_KAFKA_PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
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
    local id
    id=$(java_run kafka.tools.StorageTool random-uuid | tail -n 1)
    java_run kafka.tools.StorageTool format -t "$id" -c "$DATA/server.properties" >>"$LOG" 2>&1 \
      || die "formatting Kafka storage failed; see $LOG"
  fi
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
