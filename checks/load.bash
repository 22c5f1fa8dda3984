#!/bin/bash

# name: Load
# description: 5-minute load average per CPU; warns over 1.5, fails over 3.0
# version: 1.0
# schedule: *:0/5
# timeout: 10

# --- Description ---
# Divides the 5-minute load average of /proc/loadavg by the number of CPUs
# this host may use (nproc) and reports:
#   OK       "load 0.79 over 5 minutes on 2 CPUs (0.40 per CPU)"
#   WARNING  the same, plus ", warning over 1.5 per CPU", over WARN_PER_CPU
#   FAILURE  the same, plus ", failure over 3.0 per CPU", over FAIL_PER_CPU
# Exits non-zero (an ERROR of the check) only when the load or the number of
# CPUs cannot be read or the configuration is invalid.

# --- Configuration ---
# Each value can be overridden from the environment (e.g. in a drop-in of the
# check's service unit: Environment=WARN_PER_CPU=2).
#   WARN_PER_CPU  WARNING when the load per CPU is over this (default 1.5).
#   FAIL_PER_CPU  FAILURE when the load per CPU is over this (default 3.0).
WARN_PER_CPU="${WARN_PER_CPU:-1.5}"
FAIL_PER_CPU="${FAIL_PER_CPU:-3.0}"

set -u

# --- Constants ---
STATUS_OK="OK"
STATUS_WARNING="WARNING"
STATUS_FAILURE="FAILURE"
LOADAVG="/proc/loadavg"

# --- Script Logic ---
report() {
  echo "$(date '+%Y-%m-%d %H:%M:%S'), $1, $2"
}

die() {
  echo "load: $*" >&2
  exit 1
}

for var in WARN_PER_CPU FAIL_PER_CPU; do
  [[ ${!var} =~ ^[0-9]{1,9}(\.[0-9]+)?$ ]] || die "$var must be a number, got \"${!var}\""
done

read -r _load1 load5 _rest <"$LOADAVG" || die "cannot read $LOADAVG"
[[ $load5 =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "unexpected content in $LOADAVG: \"$load5\""
cpus=$(nproc) || die "nproc failed"
[[ $cpus =~ ^[0-9]+$ ]] && ((cpus > 0)) || die "nproc printed \"$cpus\""

# Floating point in awk: the load per CPU, and which threshold it is over.
read -r per_cpu level < <(
  awk -v l="$load5" -v c="$cpus" -v w="$WARN_PER_CPU" -v f="$FAIL_PER_CPU" 'BEGIN {
    p = l / c
    level = "ok"
    if (p > w) level = "warning"
    if (p > f) level = "failure"
    printf "%.2f %s\n", p, level
  }'
)
[[ -n ${level:-} ]] || die "awk failed"

if ((cpus == 1)); then
  message="load $load5 over 5 minutes on 1 CPU ($per_cpu per CPU)"
else
  message="load $load5 over 5 minutes on $cpus CPUs ($per_cpu per CPU)"
fi
case "$level" in
  failure) report "$STATUS_FAILURE" "$message, failure over $FAIL_PER_CPU per CPU" ;;
  warning) report "$STATUS_WARNING" "$message, warning over $WARN_PER_CPU per CPU" ;;
  *) report "$STATUS_OK" "$message" ;;
esac

exit 0
