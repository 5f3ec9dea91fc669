#!/usr/bin/env bash
# Installs whatever is missing for ecpds on a fresh Debian machine, and nothing twice:
# Debian packages (infra/apt-packages.txt), the Python venv (.venv, from pyproject.toml), the
# S3 client tools' venv (.venv-tools, infra/tools-requirements.txt),
# the compiled Avro codec (native/avro, Rust), Kafka jars (Maven, infra/kafka/pom.xml), the
# Node test servers (infra/npm) and Shopify's Toxiproxy (a Go module, for `make chaos`).
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

native_step() {
  # Optional: without cargo, bus.codec keeps to its pure-Python path (several times slower).
  if [ -d "$HOME/.cargo/bin" ]; then PATH="$HOME/.cargo/bin:$PATH"; fi
  local d; d=$(digest $(find native/avro -path native/avro/target -prune -o -type f \
    \( -name '*.rs' -o -name '*.toml' -o -name '*.py' -o -name '*.pyi' -o -name Cargo.lock \) \
    -print | sort))
  if [ "$(cat "$STAMPS/native" 2>/dev/null)" = "$d" ] && .venv/bin/python -c 'import ecpds_avro' 2>/dev/null; then
    return 0
  fi
  if ! command -v cargo >/dev/null 2>&1; then
    echo "install: no Rust toolchain (cargo): skipping the compiled Avro codec (native/avro);"
    echo "         bus.codec uses its pure-Python path. Install Rust (rustup, or Debian's cargo) for it."
    return 0
  fi
  echo "install: compiled Avro codec (native/avro)"
  .venv/bin/pip install -q --disable-pip-version-check ./native/avro
  echo "$d" >"$STAMPS/native"
}

tools_step() {
  # Stock S3 clients for the portal's tests (the aws CLI) in their own venv: awscli pins a
  # botocore that aiobotocore's pin in .venv would refuse.
  local d; d=$(digest infra/tools-requirements.txt)
  if [ -x .venv-tools/bin/aws ] && [ "$(cat "$STAMPS/tools" 2>/dev/null)" = "$d" ]; then return 0; fi
  echo "install: S3 client tools (.venv-tools)"
  local py; py=$(command -v python3.11 || command -v python3)
  [ -x .venv-tools/bin/python ] || "$py" -m venv .venv-tools
  .venv-tools/bin/pip install -q --disable-pip-version-check -r infra/tools-requirements.txt
  echo "$d" >"$STAMPS/tools"
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

toxiproxy_step() {
  # Optional: the TCP fault proxy of the chaos suite (tests/chaos), built from the Go module
  # proxy into var/cache/bin; without Go the network faults of that suite are skipped.
  local version=v2.5.0 bin=var/cache/bin/toxiproxy-server
  if [ -x "$bin" ] && [ "$(cat "$STAMPS/toxiproxy" 2>/dev/null)" = "$version" ]; then return 0; fi
  local go; go=$(command -v go || echo /usr/local/go/bin/go)
  if [ ! -x "$go" ]; then
    echo "install: no Go toolchain: skipping Toxiproxy (the chaos suite's network faults skip)"
    return 0
  fi
  echo "install: Toxiproxy $version (Go module, into var/cache/bin)"
  mkdir -p var/cache/bin
  # the module's server command is cmd/server; it is installed under its usual name
  GOBIN="$ROOT/var/cache/bin" "$go" install "github.com/Shopify/toxiproxy/v2/cmd/server@$version"
  mv -f var/cache/bin/server "$bin"
  echo "$version" >"$STAMPS/toxiproxy"
}

apt_step
venv_step
tools_step
native_step
kafka_step
npm_step
toxiproxy_step
