#!/usr/bin/env bash
# Debian packages the test suite uses (tmux for the over-SSH test, sqlite3 for the SQL examples,
# PostgreSQL for the multi-machine store tests). Installs only what is missing; needs root.
set -euo pipefail
want=(tmux sqlite3 postgresql)
missing=()
for p in "${want[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "system-deps: missing ${missing[*]}; install them with: sudo apt-get install ${missing[*]}" >&2
    exit 0
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
