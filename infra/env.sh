# Shared defaults for the infra scripts; sourced, never run. Every value can be overridden
# from the environment (the same ECPDS_* variables the Python settings read).
ECPDS_ROOT="${ECPDS_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
ECPDS_VAR="${ECPDS_VAR:-$ECPDS_ROOT/var}"
case "$ECPDS_VAR" in /*) ;; *) ECPDS_VAR="$ECPDS_ROOT/$ECPDS_VAR" ;; esac
ECPDS_KAFKA_PORT="${ECPDS_KAFKA_PORT:-9092}"
ECPDS_KAFKA_CONTROLLER_PORT="${ECPDS_KAFKA_CONTROLLER_PORT:-$((ECPDS_KAFKA_PORT + 1))}"
ECPDS_KAFKA_HEAP="${ECPDS_KAFKA_HEAP:-768m}"
ECPDS_PG_PORT="${ECPDS_PG_PORT:-5433}"
ECPDS_MQTT_PORT="${ECPDS_MQTT_PORT:-1883}"
KAFKA_LIBS="${KAFKA_LIBS:-$ECPDS_ROOT/var/cache/kafka-libs}"
mkdir -p "$ECPDS_VAR/log"

die() { echo "ecpds infra: $*" >&2; exit 1; }

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# pid_alive FILE -> true when FILE names a running process (a zombie is not: a server killed
# by a signal stays one until init reaps it, and must read as down so it can be started again)
pid_alive() {
  local pid
  [ -f "$1" ] && pid=$(cat "$1") && kill -0 "$pid" 2>/dev/null \
    && [ "$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)" != Z ]
}

wait_port() { # PORT SECONDS NAME LOG
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    port_in_use "$1" && return 0
    sleep 0.1
  done
  die "$3 did not open 127.0.0.1:$1 within $2 s; see $4"
}
