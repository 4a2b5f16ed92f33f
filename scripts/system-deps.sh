#!/usr/bin/env bash
# Installs the system packages the test suite uses, with apt-get when run as root
# (as CI does); otherwise prints exactly what to install. Safe to run again.
set -euo pipefail
need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing system packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # the packages' own services are not wanted: tests start their own on free ports
  for svc in mosquitto prometheus; do
    (command -v systemctl >/dev/null && systemctl stop "$svc" 2>/dev/null) || true
    pkill -x "$svc" 2>/dev/null || true
  done
else
  echo "note: tests that need ${need[*]} will be skipped."
  echo "      install them with: sudo apt-get install ${need[*]}"
fi
