#!/usr/bin/env bash
# The browser of the console's test (tests/test_console.py): Debian's Chromium and its
# chromedriver, when they are missing. Selenium is given both paths and downloads nothing.
set -euo pipefail

PACKAGES=(chromium chromium-driver)

if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
  exit 0
fi
if [[ "$(id -u)" -eq 0 ]]; then
  SUDO=()
elif command -v sudo >/dev/null; then
  SUDO=(sudo)
else
  echo "install_chromium: need root to run: apt-get install ${PACKAGES[*]}" >&2
  exit 1
fi
DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -q --no-install-recommends \
  "${PACKAGES[@]}" >/dev/null
