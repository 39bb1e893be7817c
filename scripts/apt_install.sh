#!/usr/bin/env bash
# Installs Debian packages (no recommends), as root or through sudo: the set-up's one way to
# get system tools (scripts/install_ruby_grpc.sh, scripts/install_chromium.sh).
set -euo pipefail

if [[ "$(id -u)" -eq 0 ]]; then
  SUDO=()
elif command -v sudo >/dev/null; then
  SUDO=(sudo)
else
  echo "apt_install: need root to run: apt-get install $*" >&2
  exit 1
fi
DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -q --no-install-recommends \
  "$@" >/dev/null
