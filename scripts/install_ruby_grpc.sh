#!/usr/bin/env bash
# The Ruby SDK's toolchain, from Debian's packages when it is missing: Ruby with gRPC, and
# the protoc and grpc_ruby_plugin that generate its code (the versions of those runtimes).
set -euo pipefail

PACKAGES=(ruby ruby-grpc ruby-google-protobuf protobuf-compiler protobuf-compiler-grpc)

if command -v ruby >/dev/null && ruby -e 'require "grpc"' 2>/dev/null \
  && [[ -x /usr/bin/protoc && -x /usr/bin/grpc_ruby_plugin ]]; then
  exit 0
fi
"$(dirname "${BASH_SOURCE[0]}")/apt_install.sh" "${PACKAGES[@]}"
