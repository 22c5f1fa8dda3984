#!/bin/bash

# name: Memory
# description: Available memory (MemAvailable of /proc/meminfo); warns under 10%, fails under 5%
# version: 1.0
# schedule: *:0/5
# timeout: 10

# --- Description ---
# Reads MemAvailable and MemTotal from /proc/meminfo (the memory the kernel
# can give to new work without swapping, page cache included) and reports:
#   OK       "62.4% of memory available (14987 of 24005 MiB)"
#   WARNING  the same, plus ", warning under 10%", below WARN_AVAILABLE_PERCENT
#   FAILURE  the same, plus ", failure under 5%", below FAIL_AVAILABLE_PERCENT
#   UNKNOWN  when the kernel does not report MemAvailable (before Linux 3.14)
# Exits non-zero (an ERROR of the check) only when /proc/meminfo cannot be
# read or the configuration is invalid.

# --- Configuration ---
# Each value can be overridden from the environment (e.g. in a drop-in of the
# check's service unit: Environment=WARN_AVAILABLE_PERCENT=15).
#   WARN_AVAILABLE_PERCENT  WARNING below this share of memory available,
#                           in percent, decimals allowed (default 10).
#   FAIL_AVAILABLE_PERCENT  FAILURE below this share (default 5).
WARN_AVAILABLE_PERCENT="${WARN_AVAILABLE_PERCENT:-10}"
FAIL_AVAILABLE_PERCENT="${FAIL_AVAILABLE_PERCENT:-5}"

set -u

# --- Constants ---
STATUS_OK="OK"
STATUS_WARNING="WARNING"
STATUS_FAILURE="FAILURE"
STATUS_UNKNOWN="UNKNOWN"
MEMINFO="/proc/meminfo"

# --- Script Logic ---
report() {
  echo "$(date '+%Y-%m-%d %H:%M:%S'), $1, $2"
}

die() {
  echo "memory: $*" >&2
  exit 1
}

for var in WARN_AVAILABLE_PERCENT FAIL_AVAILABLE_PERCENT; do
  [[ ${!var} =~ ^[0-9]{1,9}(\.[0-9]+)?$ ]] || die "$var must be a number of percent, got \"${!var}\""
done

[[ -r $MEMINFO ]] || die "cannot read $MEMINFO"
total_kb=""
available_kb=""
while read -r key value _unit; do
  case "$key" in
    MemTotal:) total_kb=$value ;;
    MemAvailable:) available_kb=$value ;;
  esac
done <"$MEMINFO"

[[ $total_kb =~ ^[0-9]+$ ]] && ((total_kb > 0)) || die "no MemTotal in $MEMINFO"
if [[ ! $available_kb =~ ^[0-9]+$ ]]; then
  report "$STATUS_UNKNOWN" "the kernel does not report MemAvailable in $MEMINFO"
  exit 0
fi

# Floating point in awk: the share with one decimal, and which threshold it is under.
read -r percent level < <(
  awk -v a="$available_kb" -v t="$total_kb" \
    -v w="$WARN_AVAILABLE_PERCENT" -v f="$FAIL_AVAILABLE_PERCENT" 'BEGIN {
      p = a * 100 / t
      level = "ok"
      if (p < w) level = "warning"
      if (p < f) level = "failure"
      printf "%.1f %s\n", p, level
    }'
)
[[ -n ${level:-} ]] || die "awk failed"

message="${percent}% of memory available ($((available_kb / 1024)) of $((total_kb / 1024)) MiB)"
case "$level" in
  failure) report "$STATUS_FAILURE" "$message, failure under ${FAIL_AVAILABLE_PERCENT}%" ;;
  warning) report "$STATUS_WARNING" "$message, warning under ${WARN_AVAILABLE_PERCENT}%" ;;
  *) report "$STATUS_OK" "$message" ;;
esac

exit 0
