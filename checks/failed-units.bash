#!/bin/bash

# name: Failed units
# description: systemd units in the failed state (systemctl --failed)
# version: 1.0
# schedule: *:0/5
# timeout: 20

# --- Description ---
# Asks the service manager for its failed units and reports:
#   OK       "no failed units"
#   FAILURE  "2 failed: backup.service, nginx.service"
# A failed unit stays listed until it succeeds again or is reset with
# `systemctl reset-failed UNIT`.
# Exits non-zero, with systemctl's reason on stderr (an ERROR of the check),
# when systemctl cannot reach the manager.

# --- Configuration ---
# Each value can be overridden from the environment (e.g. in a drop-in of the
# check's service unit: Environment=SYSTEMCTL_USER=1).
#   SYSTEMCTL_USER  1 to ask the calling user's manager (systemctl --user),
#                   0 for the system manager. Default: the manager the check
#                   was installed for (`lookout check add --user` sets
#                   LOOKOUT_SYSTEMD_SCOPE=user in its unit), else 0.
case "${LOOKOUT_SYSTEMD_SCOPE:-system}" in
  user) SYSTEMCTL_USER="${SYSTEMCTL_USER:-1}" ;;
  *) SYSTEMCTL_USER="${SYSTEMCTL_USER:-0}" ;;
esac

set -u

# --- Constants ---
STATUS_OK="OK"
STATUS_FAILURE="FAILURE"

# --- Script Logic ---
report() {
  echo "$(date '+%Y-%m-%d %H:%M:%S'), $1, $2"
}

die() {
  echo "failed-units: $*" >&2
  exit 1
}

case "$SYSTEMCTL_USER" in
  1) scope=(--user) ;;
  0) scope=(--system) ;;
  *) die "SYSTEMCTL_USER must be 0 or 1, got \"$SYSTEMCTL_USER\"" ;;
esac

errors=$(mktemp) || die "cannot create a temporary file"
trap 'rm -f -- "$errors"' EXIT
if ! output=$(LC_ALL=C systemctl "${scope[@]}" --failed --no-legend --plain --no-pager 2>"$errors"); then
  reason=$(grep -v '^[[:space:]]*$' "$errors" | tail -n 1)
  die "cannot list the failed units of the ${scope[0]#--} manager: ${reason:-systemctl failed}"
fi

# One line a unit: UNIT LOAD ACTIVE SUB DESCRIPTION
units=()
while read -r unit _rest; do
  [[ -n $unit ]] && units+=("$unit")
done <<<"$output"

if ((${#units[@]} == 0)); then
  report "$STATUS_OK" "no failed units"
else
  list=$(printf '%s, ' "${units[@]}")
  report "$STATUS_FAILURE" "${#units[@]} failed: ${list%, }"
fi

exit 0
