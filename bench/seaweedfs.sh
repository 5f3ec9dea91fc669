#!/usr/bin/env bash
# Builds SeaweedFS's `weed` binary (Apache-2.0) from the Go module proxy into var/cache/bin, for
# the benchmarks only (bench/portal_s3.py compares the portal's S3 door with its S3 gateway);
# neither `make install` nor `make test` runs it. Skipped when the stamp names this version.
# The build takes several minutes on 2 cores; prints the binary's path on success.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
# the one version this machine's Go module proxy serves (no tagged release is listed)
VERSION=v0.0.0-20261109003541-7506e5f91cd6
BIN=var/cache/bin/weed STAMP=var/cache/stamps/seaweedfs
if [ -x "$BIN" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$VERSION" ]; then echo "$ROOT/$BIN"; exit 0; fi
GO=$(command -v go || echo /usr/local/go/bin/go)
[ -x "$GO" ] || { echo "seaweedfs: no Go toolchain" >&2; exit 1; }
mkdir -p var/cache/bin var/cache/stamps
echo "seaweedfs: building weed $VERSION (Go module, into var/cache/bin)" >&2
# `go install weed@VERSION` refuses a module whose go.mod has replace directives (SeaweedFS's
# has one), so the module is fetched from the proxy and built as the main module, where its
# go.mod and go.sum hold (the module cache is read-only: nothing is written there)
MODULE=github.com/seaweedfs/seaweedfs@$VERSION
"$GO" mod download "$MODULE"
(cd "$("$GO" env GOMODCACHE)/$MODULE" && "$GO" build -o "$ROOT/$BIN" ./weed) >&2
echo "$VERSION" >"$STAMP"
echo "$ROOT/$BIN"
