#!/usr/bin/env bash
# A 3-node Apache Kafka cluster on this machine, for running ecpds past one broker and for fault
# tests: start [N] | stop [N] | status | kill N | restart N | bootstrap.
# Each node is a KRaft broker and controller at once, with its own folder under
# $ECPDS_VAR/cluster/nodeN and its own ports: node N listens on ECPDS_KAFKA_CLUSTER_PORT + 2(N-1)
# and its controller one above (default base: ECPDS_KAFKA_PORT + 100, so 9192-9197 next to
# `make up`'s 9092). Topics get 3 replicas and writes with acks=all need 2 of them
# (min.insync.replicas), so any one node may die. `kill N` SIGKILLs node N; `start` brings it back.
# The nodes are lib.sh's, as kafka.sh's single one is; `bootstrap` prints the list for
# ECPDS_KAFKA_BOOTSTRAP.
set -euo pipefail
source "$(dirname "$0")/../env.sh"
source "$(dirname "$0")/lib.sh"
NODES=(1 2 3)
BASE="${ECPDS_KAFKA_CLUSTER_PORT:-$((ECPDS_KAFKA_PORT + 100))}"
HEAP="${ECPDS_KAFKA_CLUSTER_HEAP:-320m}" # three of them beside the components on 2 cores, 24 GB
ROOT_DIR="$ECPDS_VAR/cluster"

port() { echo $((BASE + 2 * ($1 - 1))); }
controller_port() { echo $((BASE + 2 * ($1 - 1) + 1)); }
dir() { echo "$ROOT_DIR/node$1"; }
log() { echo "$ECPDS_VAR/log/kafka-node$1.log"; }
node_arg() { case "${1:-}" in 1 | 2 | 3) ;; *) die "cluster: expected a node number 1, 2 or 3, got '${1:-}'" ;; esac; }

voters() {
  local n out=()
  for n in "${NODES[@]}"; do out+=("$n@127.0.0.1:$(controller_port "$n")"); done
  (IFS=,; echo "${out[*]}")
}

bootstrap() {
  local n out=()
  for n in "${NODES[@]}"; do out+=("127.0.0.1:$(port "$n")"); done
  (IFS=,; echo "${out[*]}")
}

# one cluster id for the three storages, chosen when the first node is formatted
cluster_id() {
  [ -s "$ROOT_DIR/cluster.id" ] || kafka_new_cluster_id "$(dir 1)" >"$ROOT_DIR/cluster.id"
  cat "$ROOT_DIR/cluster.id"
}

launch() { # N: configure, format once and start node N, unless it runs already
  local n=$1 d
  d=$(dir "$n")
  if kafka_alive "$d"; then echo "cluster: node $n already running (pid $(cat "$d/kafka.pid"))"; return 0; fi
  port_in_use "$(port "$n")" && die "port $(port "$n") is in use: stop it or set ECPDS_KAFKA_CLUSTER_PORT"
  port_in_use "$(controller_port "$n")" && die "port $(controller_port "$n") is in use: set ECPDS_KAFKA_CLUSTER_PORT"
  kafka_configure "$d" "$n" "$(port "$n")" "$(controller_port "$n")" "$(voters)" "${#NODES[@]}"
  kafka_format "$d" "$(cluster_id)" "$(log "$n")"
  kafka_launch "$d" "$HEAP" "$(log "$n")"
  echo "cluster: node $n starting (pid $(cat "$d/kafka.pid")) on 127.0.0.1:$(port "$n")"
}

start() { # [N]: all nodes are launched before any is waited for (the quorum needs two)
  local n chosen=("${NODES[@]}")
  if [ -n "${1:-}" ]; then node_arg "$1"; chosen=("$1"); fi
  kafka_install
  mkdir -p "$ROOT_DIR"
  for n in "${chosen[@]}"; do launch "$n"; done
  for n in "${chosen[@]}"; do wait_port "$(port "$n")" 90 "kafka node $n" "$(log "$n")"; done
  echo "cluster: up; ECPDS_KAFKA_BOOTSTRAP=$(bootstrap)"
}

stop() { # [N]: all nodes are signalled at once, so the quorum lasts while they shut down
  local n chosen=("${NODES[@]}")
  if [ -n "${1:-}" ]; then node_arg "$1"; chosen=("$1"); fi
  local signalled=()
  for n in "${chosen[@]}"; do
    if kafka_signal "$(dir "$n")"; then signalled+=("$n"); else echo "cluster: node $n not running"; fi
  done
  for n in "${signalled[@]}"; do kafka_reap "$(dir "$n")"; echo "cluster: node $n stopped"; done
}

kill_node() { # N: SIGKILL, as a crash would; waits until the process is gone
  node_arg "${1:-}"
  local d i
  d=$(dir "$1")
  kafka_alive "$d" || die "cluster: node $1 is not running"
  kill -9 "$(cat "$d/kafka.pid")"
  for ((i = 0; i < 100; i++)); do pid_alive "$d/kafka.pid" || break; sleep 0.1; done
  rm -f "$d/kafka.pid"
  echo "cluster: node $1 killed"
}

status() {
  local n down=0
  for n in "${NODES[@]}"; do
    if kafka_alive "$(dir "$n")" && port_in_use "$(port "$n")"; then
      echo "cluster: node $n running on 127.0.0.1:$(port "$n")"
    else
      echo "cluster: node $n down"; down=1
    fi
  done
  return "$down"
}

case "${1:-}" in
  start | stop) "$1" "${2:-}" ;;
  status | bootstrap) "$1" ;;
  kill) kill_node "${2:-}" ;;
  restart) node_arg "${2:-}"; stop "$2"; start "$2" ;;
  *) echo "usage: $0 start [N]|stop [N]|status|kill N|restart N|bootstrap" >&2; exit 2 ;;
esac
