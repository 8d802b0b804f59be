#!/usr/bin/env bash
# Installs every build and test dependency on a fresh Debian 12 machine (idempotent; skips what is present).
set -euo pipefail
apt_pkgs=(build-essential cmake ninja-build pkg-config git unzip ca-certificates
          libcli11-dev nlohmann-json3-dev libspdlog-dev libfmt-dev libpcre2-dev libicu-dev libboost-dev
          libgtest-dev libgmock-dev libbenchmark-dev clang python3-pip chromium)
missing=()
for p in "${apt_pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
py="${PYTHON:-python3}"
# Python is for tests and clients only.
"$py" -m pip install -q --disable-pip-version-check -r "$(dirname "$0")/../requirements-test.txt"
