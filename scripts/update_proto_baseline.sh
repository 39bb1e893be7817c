#!/usr/bin/env bash
# Deliberately refreshes protos/baseline.binpb, the image `buf breaking` compares against
# (scripts/check_protos.sh). Run it only when a breaking change is intended/accepted, or after
# additive changes have been released, and commit the new baseline together with the .proto change.
#
# Env: BUF (default scripts/tools/node_modules/.bin/buf; install: npm ci --prefix scripts/tools)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

BUF="${BUF:-scripts/tools/node_modules/.bin/buf}"
BASELINE="protos/baseline.binpb"

command -v "$BUF" >/dev/null 2>&1 \
  || { echo "update_proto_baseline: buf not found at '$BUF' (run: npm ci --prefix scripts/tools)" >&2; exit 1; }

"$BUF" lint
"$BUF" build -o "$BASELINE"
echo "update_proto_baseline: wrote $BASELINE (commit it)"
