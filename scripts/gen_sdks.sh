#!/usr/bin/env bash
# Regenerates the SDKs' generated code from protos/, with `buf generate` and each SDK's
# committed template (the one command to use):
#   sdk/typescript/src/gen   protoc-gen-es (pinned in sdk/typescript/package.json)
#   sdk/ruby/lib/embedpipe   Debian's protoc and grpc_ruby_plugin (make setup installs them)
# Offline. Env: BUF (default scripts/tools/node_modules/.bin/buf).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

BUF="${BUF:-scripts/tools/node_modules/.bin/buf}"
die() { echo "gen_sdks: $*" >&2; exit 1; }

command -v "$BUF" >/dev/null 2>&1 || die "buf not found at '$BUF' (run: make setup)"
[[ -x sdk/typescript/node_modules/.bin/protoc-gen-es ]] \
  || die "protoc-gen-es missing (run: npm ci --prefix sdk/typescript)"
for tool in /usr/bin/protoc /usr/bin/grpc_ruby_plugin; do
  [[ -x "$tool" ]] || die "$tool missing (run: make setup, or apt-get install protobuf-compiler protobuf-compiler-grpc)"
done

# Start from a clean slate so code of deleted protos does not linger.
rm -rf sdk/typescript/src/gen sdk/ruby/lib/embedpipe
"$BUF" generate --template sdk/typescript/buf.gen.yaml
"$BUF" generate --template sdk/ruby/buf.gen.yaml
echo "gen_sdks: regenerated sdk/typescript/src/gen and sdk/ruby/lib/embedpipe"
