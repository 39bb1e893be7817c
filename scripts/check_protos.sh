#!/usr/bin/env bash
# CI gate for the proto contracts (offline):
#   buf lint (STANDARD) -> buf format -> buf breaking vs protos/baseline.binpb (FILE)
#   -> regenerate stubs (scripts/gen_protos.sh) and SDKs (scripts/gen_sdks.sh), and fail if the
#   generated code differs from git.
#
# Env: PYTHON, BUF (see scripts/gen_protos.sh).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

BUF="${BUF:-scripts/tools/node_modules/.bin/buf}"
export BUF
BASELINE="protos/baseline.binpb"
# The generated packages: protos/embedpipe/X -> embedpipe/X.
mapfile -t GEN_DIRS < <(cd protos && find embedpipe -mindepth 1 -maxdepth 1 -type d | LC_ALL=C sort)

fail() { echo "check_protos: FAIL: $*" >&2; exit 1; }

command -v "$BUF" >/dev/null 2>&1 || fail "buf not found at '$BUF' (run: npm ci --prefix scripts/tools)"
[[ -f "$BASELINE" ]] || fail "$BASELINE missing (run scripts/update_proto_baseline.sh)"

echo "check_protos: buf lint"
"$BUF" lint || fail "buf lint reported issues (see above)"

echo "check_protos: buf format"
"$BUF" format --diff --exit-code || fail "protos are not buf-formatted (fix: $BUF format -w)"

echo "check_protos: buf breaking --against $BASELINE"
"$BUF" breaking --against "$BASELINE" \
  || fail "breaking change vs $BASELINE (if intended: scripts/update_proto_baseline.sh, commit the new baseline)"

echo "check_protos: regenerating stubs and SDKs"
scripts/gen_protos.sh
scripts/gen_sdks.sh
GEN_DIRS+=(sdk/typescript/src/gen sdk/ruby/lib/embedpipe)

changes="$(git status --porcelain --untracked-files=all -- "${GEN_DIRS[@]}")"
if [[ -n "$changes" ]]; then
  echo "$changes" >&2
  git --no-pager diff --stat -- "${GEN_DIRS[@]}" >&2 || true
  fail "generated stubs in ${GEN_DIRS[*]} are stale or uncommitted (run scripts/gen_protos.sh and scripts/gen_sdks.sh, and commit the result)"
fi

echo "check_protos: OK"
