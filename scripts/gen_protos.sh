#!/usr/bin/env bash
# Regenerates ALL Python stubs for protos/ (protos/embedpipe/<service>/v1 -> embedpipe/<service>/v1;
# the one command to use):
#   *_pb2.py, *_pb2.pyi          buf generate (buf.gen.yaml: protoc built-ins python/pyi)
#   *_pb2_grpc.py, *_pb2_grpc.pyi  grpc_tools.protoc --grpc_python_out + mypy-protobuf's mypy_grpc
# Everything runs offline with the protoc bundled in grpcio-tools (same protoc for both steps).
#
# Env: PYTHON (default .venv/bin/python; must have grpcio-tools and mypy-protobuf installed)
#      BUF    (default scripts/tools/node_modules/.bin/buf; install: npm ci --prefix scripts/tools)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

DEFAULT_PYTHON=".venv/bin/python"
PYTHON="${PYTHON:-$DEFAULT_PYTHON}"
BUF="${BUF:-scripts/tools/node_modules/.bin/buf}"
PROTO_DIR="protos"
# One generated package per proto package directory: protos/embedpipe/X -> embedpipe/X.
mapfile -t OUT_PKGS < <(cd "$PROTO_DIR" && find embedpipe -mindepth 1 -maxdepth 1 -type d | LC_ALL=C sort)

die() { echo "gen_protos: $*" >&2; exit 1; }

command -v "$BUF" >/dev/null 2>&1 || die "buf not found at '$BUF' (run: npm ci --prefix scripts/tools, or set BUF=...)"
command -v "$PYTHON" >/dev/null 2>&1 || die "python not found at '$PYTHON' (set PYTHON=...)"
"$PYTHON" -c 'import grpc_tools.protoc, mypy_protobuf' 2>/dev/null \
  || die "'$PYTHON' lacks grpcio-tools and/or mypy-protobuf"

SCRIPTS_DIR="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
MYPY_GRPC_PLUGIN="$SCRIPTS_DIR/protoc-gen-mypy_grpc"
[[ -x "$MYPY_GRPC_PLUGIN" ]] || die "protoc-gen-mypy_grpc not found at '$MYPY_GRPC_PLUGIN'"

# Start from a clean slate so stubs of deleted/renamed protos don't linger.
for pkg in "${OUT_PKGS[@]}"; do
  [[ -d "$pkg" ]] || continue
  find "$pkg" -type f \( -name '*_pb2.py' -o -name '*_pb2.pyi' \
    -o -name '*_pb2_grpc.py' -o -name '*_pb2_grpc.pyi' \) -delete
done

# 1) *_pb2.py / *_pb2.pyi via buf. buf.gen.yaml names the default interpreter; for another
#    PYTHON pass the same template with that interpreter substituted (inline template).
if [[ "$PYTHON" == "$DEFAULT_PYTHON" ]]; then
  "$BUF" generate --template buf.gen.yaml
else
  template="$("$PYTHON" -c '
import json, sys
default, python = sys.argv[1], sys.argv[2]
text = open("buf.gen.yaml", encoding="utf-8").read()
assert json.dumps(default) in text, "buf.gen.yaml no longer names " + default
print(text.replace(json.dumps(default), json.dumps(python)))
' "$DEFAULT_PYTHON" "$PYTHON")"
  "$BUF" generate --template "$template"
fi

# 2) *_pb2_grpc.py / *_pb2_grpc.pyi via plain protoc (grpc_tools adds the WKT include path itself).
mapfile -t PROTO_FILES < <(cd "$PROTO_DIR" && find . -name '*.proto' -type f | sed 's|^\./||' | LC_ALL=C sort)
((${#PROTO_FILES[@]})) || die "no .proto files under $PROTO_DIR"
"$PYTHON" -m grpc_tools.protoc \
  -I "$PROTO_DIR" \
  --plugin=protoc-gen-mypy_grpc="$MYPY_GRPC_PLUGIN" \
  --grpc_python_out=. \
  --mypy_grpc_opt=quiet \
  --mypy_grpc_out=. \
  "${PROTO_FILES[@]}"

# 3) Package markers for every generated directory (created once; never overwritten).
while IFS= read -r dir; do
  [[ -f "$dir/__init__.py" ]] || echo '"""Generated protobuf/gRPC code (scripts/gen_protos.sh). Do not edit."""' >"$dir/__init__.py"
done < <(
  printf '%s\n' "${OUT_PKGS[@]}"
  find "${OUT_PKGS[@]}" -type f -name '*_pb2.py' -exec dirname {} \; | LC_ALL=C sort -u
)

echo "gen_protos: regenerated stubs under ${OUT_PKGS[*]}"
