#!/usr/bin/env bash
# The browser of the console's test (tests/test_console.py): Debian's Chromium and its
# chromedriver, when they are missing. Selenium is given both paths and downloads nothing.
set -euo pipefail

PACKAGES=(chromium chromium-driver)

if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
  exit 0
fi
"$(dirname "${BASH_SOURCE[0]}")/apt_install.sh" "${PACKAGES[@]}"
