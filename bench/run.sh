#!/usr/bin/env bash
# Runs every benchmark in bench/ (each prints one JSON object) and keeps the results.
# BENCH="codec kafka" limits the set; sizes are each benchmark's own defaults unless set.
set -uo pipefail
cd "$(dirname "$0")/.."
out=var/bench/results/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$out"
export ECPDS_VAR=${ECPDS_VAR:-var/bench} ECPDS_KAFKA_PORT=${ECPDS_KAFKA_PORT:-39092} ECPDS_PG_PORT=${ECPDS_PG_PORT:-35433}
names=${BENCH:-$(ls bench/*.py | xargs -n1 basename | sed 's/\.py$//' | grep -v '^_')}
for name in $names; do
  echo "== $name" >&2
  if .venv/bin/python "bench/$name.py" >"$out/$name.json" 2>"$out/$name.log"; then
    cat "$out/$name.json"
  else
    echo "{\"benchmark\": \"$name\", \"error\": \"failed, see $out/$name.log\"}" | tee "$out/$name.json"
  fi
done
bash infra/kafka/kafka.sh stop >/dev/null 2>&1 || true
bash infra/pg/pg.sh stop >/dev/null 2>&1 || true
echo "results in $out" >&2
