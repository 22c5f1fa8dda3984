#!/bin/bash

# name: System updates
# description: Pending package updates on Debian/Ubuntu (apt-get -s upgrade)
# version: 1.0
# schedule: *-*-* 00/6:00:00
# timeout: 120

# --- Description ---
# Simulates an upgrade with apt-get (no lock taken, nothing changed) and
# counts the packages it would install, and those coming from a -security
# archive:
#   OK       "System is up to date"
#   UPDATE   "12 available updates (3 security updates)"
#   UNKNOWN  "apt-get not found: not a Debian/Ubuntu system"
# It does not refresh the package lists (apt-get update): that is the job of
# the system (apt-daily.timer or unattended-upgrades), so the count is as
# fresh as the last refresh.
# Exits non-zero (an ERROR of the check) only when apt-get fails.

# --- Configuration ---
# Nothing to configure.

set -u

# --- Constants ---
STATUS_OK="OK"
STATUS_UPDATE="UPDATE"
STATUS_UNKNOWN="UNKNOWN"
MSG_OK="System is up to date"
MSG_UPDATE_AVAILABLE="available updates"
MSG_SECURITY_UPDATES="security updates"

# --- Script Logic ---
report() {
  echo "$(date '+%Y-%m-%d %H:%M:%S'), $1, $2"
}

die() {
  echo "system-updates: $*" >&2
  exit 1
}

if ! command -v apt-get >/dev/null 2>&1; then
  report "$STATUS_UNKNOWN" "apt-get not found: not a Debian/Ubuntu system"
  exit 0
fi

# stderr with stdout: only lines starting with "Inst " are counted, and on
# failure the last line is apt-get's reason (E: ...).
if ! output=$(LC_ALL=C apt-get -s -o Debug::NoLocking=true upgrade 2>&1); then
  reason=$(grep -v '^[[:space:]]*$' <<<"$output" | tail -n 1)
  die "apt-get -s upgrade failed: ${reason:-no reason given}"
fi

total=0
security=0
while IFS= read -r line; do
  if [[ $line == "Inst "* ]]; then
    total=$((total + 1))
    if [[ $line == *-security* ]]; then
      security=$((security + 1))
    fi
  fi
done <<<"$output"

if ((total > 0)); then
  report "$STATUS_UPDATE" "$total $MSG_UPDATE_AVAILABLE ($security $MSG_SECURITY_UPDATES)"
else
  report "$STATUS_OK" "$MSG_OK"
fi

exit 0
