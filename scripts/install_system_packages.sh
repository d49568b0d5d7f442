#!/usr/bin/env bash
# Install the Debian packages the tests drive (names as arguments) where apt-get is usable as root.
# Elsewhere, or when apt fails, it says which are missing and carries on: the tests that need them
# skip with the reason, and the rest of `make test` still runs.
set -uo pipefail
missing=()
for package in "$@"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if command -v apt-get >/dev/null && [ "$(id -u)" -eq 0 ]; then
  if apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; then
    exit 0
  fi
  echo "SKIPPED: apt-get could not install ${missing[*]}; the tests that use them will skip"
else
  echo "SKIPPED: ${missing[*]} not installed and apt-get is not usable here (needs root); the tests that use them will skip"
fi
