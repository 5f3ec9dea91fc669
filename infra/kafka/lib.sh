# Kafka node helpers shared by kafka.sh (one node) and cluster.sh (three); sourced after
# infra/env.sh, never run. A node is a folder holding its server.properties, log4j.properties,
# data/ and kafka.pid; every function takes that folder, so the two scripts differ only in how
# many nodes they place and on which ports.

kafka_install() {
  if ls "$KAFKA_LIBS"/kafka_2.13-*.jar >/dev/null 2>&1; then return 0; fi
  command -v java >/dev/null || die "Java is missing: run 'make install' (apt-get install openjdk-17-jre-headless)"
  command -v mvn >/dev/null || die "Maven is missing: run 'make install' (apt-get install maven)"
  echo "ecpds infra: resolving Kafka jars from Maven Central into $KAFKA_LIBS"
  mvn -q -B -f "$ECPDS_ROOT/infra/kafka/pom.xml" -Dkafka.libs="$KAFKA_LIBS" dependency:copy-dependencies \
    || die "Maven could not resolve Kafka (see output above)"
}

# kafka_configure DIR NODE_ID PORT CONTROLLER_PORT VOTERS REPLICAS
# A combined broker+controller. REPLICAS is the cluster's size: every internal topic and every
# topic created without a factor gets that many copies, and with more than one node a write
# acknowledged to acks=all is on two of them (min.insync.replicas), so one node may die.
kafka_configure() {
  local dir=$1 id=$2 port=$3 controller=$4 voters=$5 replicas=$6 isr=1
  [ "$replicas" -gt 1 ] && isr=2
  mkdir -p "$dir/data"
  cat >"$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=$id
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/data
num.partitions=4
default.replication.factor=$replicas
min.insync.replicas=$isr
offsets.topic.replication.factor=$replicas
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=$replicas
transaction.state.log.min.isr=$isr
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
log.retention.hours=168
log.segment.bytes=268435456
log.cleaner.min.compaction.lag.ms=0
message.max.bytes=10485760
PROPS
  if [ "$replicas" -gt 1 ]; then
    # a dead node is fenced (its partitions led elsewhere, dropped from the ISRs) after 6 s
    # without a heartbeat instead of 9: writes to its partitions stall that long
    printf '%s\n' broker.heartbeat.interval.ms=1000 broker.session.timeout.ms=6000 \
      >>"$dir/server.properties"
  fi
  cat >"$dir/log4j.properties" <<PROPS
log4j.rootLogger=WARN, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.server.KafkaServer=INFO
log4j.logger.kafka.server.BrokerServer=INFO
PROPS
}

# kafka_tool DIR CLASS ARGS... runs one of Kafka's command-line tools (small heap)
kafka_tool() {
  local dir=$1
  shift
  java -Xmx256m -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j.configuration="file:$dir/log4j.properties" -cp "$KAFKA_LIBS/*" "$@"
}

kafka_new_cluster_id() { kafka_tool "$1" kafka.tools.StorageTool random-uuid | tail -n 1; }

# kafka_format DIR CLUSTER_ID LOG [ARGS...]: formats the node's storage once (a formatted one
# is kept); ARGS go to the storage tool (kafka.sh's SCRAM user)
kafka_format() {
  [ -f "$1/data/meta.properties" ] && return 0
  kafka_tool "$1" kafka.tools.StorageTool format -t "$2" -c "$1/server.properties" "${@:4}" >>"$3" 2>&1 \
    || die "formatting Kafka storage in $1 failed; see $3"
}

# kafka_launch DIR HEAP LOG: starts the node in the background (HEAP at least 256m) and
# records its pid
kafka_launch() {
  local dir=$1 heap=$2 log=$3
  nohup java -Xmx"$heap" -Xms256m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
    -Dlog4j.configuration="file:$dir/log4j.properties" -cp "$KAFKA_LIBS/*" \
    kafka.Kafka "$dir/server.properties" >>"$log" 2>&1 &
  echo $! >"$dir/kafka.pid"
}

# kafka_alive DIR: the node's server runs. A server whose pid file went missing (a killed
# wrapper, a cleaned var/) is found by its command line and adopted.
kafka_alive() {
  local pid
  pid_alive "$1/kafka.pid" && return 0
  pid=$(pgrep -f "kafka.Kafka $1/server.properties" | head -n 1 || true)
  [ -n "$pid" ] && echo "$pid" >"$1/kafka.pid" && pid_alive "$1/kafka.pid"
}

# kafka_signal DIR: asks the node to stop (SIGTERM) without waiting; false if it is not running
kafka_signal() {
  kafka_alive "$1" || { rm -f "$1/kafka.pid"; return 1; }
  kill "$(cat "$1/kafka.pid")"
}

# kafka_reap DIR: waits up to 30 s for a signalled node to exit, then SIGKILLs it
kafka_reap() {
  local pid i
  [ -f "$1/kafka.pid" ] || return 0
  pid=$(cat "$1/kafka.pid")
  for ((i = 0; i < 300; i++)); do pid_alive "$1/kafka.pid" || break; sleep 0.1; done
  pid_alive "$1/kafka.pid" && kill -9 "$pid"
  rm -f "$1/kafka.pid"
}
