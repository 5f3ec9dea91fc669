#!/usr/bin/env bash
# Installs whatever is missing for ecpds on a fresh Debian machine, and nothing twice:
# Debian packages (infra/apt-packages.txt), the Python venv (.venv, from pyproject.toml),
# Kafka jars (Maven, infra/kafka/pom.xml) and the Node test servers (infra/npm).
# Each step is skipped when its stamp says it is done for the current inputs.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
mkdir -p var/cache
STAMPS=var/cache/stamps
mkdir -p "$STAMPS"

digest() { cat "$@" 2>/dev/null | md5sum | cut -c1-16; }

apt_step() {
  local missing=() pkg cmd
  while read -r pkg cmd; do
    [ -n "$pkg" ] || continue
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" && continue
    [ -n "$cmd" ] && command -v "$cmd" >/dev/null 2>&1 && continue
    missing+=("$pkg")
  done < <(sed -e 's/#.*//' infra/apt-packages.txt | awk 'NF{print $1, $2}')
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "install: Debian packages ${missing[*]}"
  local sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

venv_step() {
  local d; d=$(digest pyproject.toml)
  if [ -x .venv/bin/python ] && [ "$(cat "$STAMPS/venv" 2>/dev/null)" = "$d" ]; then return 0; fi
  echo "install: Python environment (.venv)"
  local py; py=$(command -v python3.11 || command -v python3)
  [ -x .venv/bin/python ] || "$py" -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check --upgrade pip
  .venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'
  echo "$d" >"$STAMPS/venv"
}

kafka_step() { infra/kafka/kafka.sh install; }

npm_step() {
  local d; d=$(digest infra/npm/package.json)
  grep -q '"dependencies": {}' infra/npm/package.json && return 0
  if [ -d infra/npm/node_modules ] && [ "$(cat "$STAMPS/npm" 2>/dev/null)" = "$d" ]; then return 0; fi
  echo "install: Node test servers (infra/npm)"
  npm install --prefix infra/npm --no-audit --no-fund --loglevel=error >/dev/null
  echo "$d" >"$STAMPS/npm"
}

apt_step
venv_step
kafka_step
npm_step
