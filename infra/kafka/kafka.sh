#!/usr/bin/env bash
# Single-node Apache Kafka in KRaft mode for ecpds: install | start | stop | status.
# Jars come from Maven Central through infra/kafka/pom.xml; data lives under $ECPDS_VAR/kafka.
# start is idempotent: a broker already running from this data dir is fine. The node itself
# (configuration, storage, launch, stop) is lib.sh's, shared with cluster.sh.
set -euo pipefail
source "$(dirname "$0")/../env.sh"
source "$(dirname "$0")/lib.sh"
DATA="$ECPDS_VAR/kafka"
LOG="$ECPDS_VAR/log/kafka.log"

start() {
  if kafka_alive "$DATA"; then echo "kafka: already running (pid $(cat "$DATA/kafka.pid")) on 127.0.0.1:$ECPDS_KAFKA_PORT"; return 0; fi
  port_in_use "$ECPDS_KAFKA_PORT" && die "port $ECPDS_KAFKA_PORT is in use by another program: stop it or set ECPDS_KAFKA_PORT"
  port_in_use "$ECPDS_KAFKA_CONTROLLER_PORT" && die "port $ECPDS_KAFKA_CONTROLLER_PORT is in use: set ECPDS_KAFKA_CONTROLLER_PORT"
  kafka_install
  kafka_configure "$DATA" 1 "$ECPDS_KAFKA_PORT" "$ECPDS_KAFKA_CONTROLLER_PORT" \
    "1@127.0.0.1:$ECPDS_KAFKA_CONTROLLER_PORT" 1
  [ -f "$DATA/data/meta.properties" ] || kafka_format "$DATA" "$(kafka_new_cluster_id "$DATA")" "$LOG"
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
