#!/bin/bash

# name: Disk usage
# description: How full the filesystems are (df -P); warns at 80%, fails at 90%
# version: 1.0
# schedule: *:0/15
# timeout: 30

# --- Description ---
# Measures the usage of each filesystem to watch with `df -P` and reports the
# fullest one:
#   OK       "/ is 23% full"                         under WARN_PERCENT
#   WARNING  "/ is 85% full, warning at 80%"         at or over WARN_PERCENT
#   FAILURE  "/ is 93% full, failure at 90%"         at or over FAIL_PERCENT
# With several filesystems the OK message adds "(the fullest of N checked)".
# Exits non-zero (an ERROR of the check, not of the host) only when df fails,
# e.g. for a path that does not exist, or when the configuration is invalid.

# --- Configuration ---
# Each value can be overridden from the environment (e.g. in a drop-in of the
# check's service unit: Environment=WARN_PERCENT=70).
#   DISK_PATHS     Paths whose filesystems are checked, separated by spaces
#                  (a path may not contain spaces), default "/". The word
#                  "all" checks every mounted local real filesystem
#                  (pseudo filesystems of DISK_EXCLUDE_TYPES left out).
#   WARN_PERCENT   WARNING at or over this usage, in percent (default 80).
#   FAIL_PERCENT   FAILURE at or over this usage, in percent (default 90).
#   DISK_EXCLUDE_TYPES  Filesystem types "all" leaves out, separated by spaces
#                  (default "tmpfs devtmpfs ramfs squashfs efivarfs").
DISK_PATHS="${DISK_PATHS:-/}"
WARN_PERCENT="${WARN_PERCENT:-80}"
FAIL_PERCENT="${FAIL_PERCENT:-90}"
DISK_EXCLUDE_TYPES="${DISK_EXCLUDE_TYPES:-tmpfs devtmpfs ramfs squashfs efivarfs}"

set -u

# --- Constants ---
STATUS_OK="OK"
STATUS_WARNING="WARNING"
STATUS_FAILURE="FAILURE"

# --- Script Logic ---
report() {
  echo "$(date '+%Y-%m-%d %H:%M:%S'), $1, $2"
}

die() {
  echo "disk-usage: $*" >&2
  exit 1
}

for var in WARN_PERCENT FAIL_PERCENT; do
  [[ ${!var} =~ ^[0-9]{1,9}$ ]] || die "$var must be a whole number of percent, got \"${!var}\""
done
warn=$((10#$WARN_PERCENT))
fail=$((10#$FAIL_PERCENT))

# What df is asked about, and the names the message uses for its answers.
df_args=()
names=()
if [[ $DISK_PATHS == "all" ]]; then
  df_args+=(-l)
  read -ra types <<<"$DISK_EXCLUDE_TYPES"
  for t in "${types[@]}"; do
    df_args+=(-x "$t")
  done
else
  read -ra names <<<"$DISK_PATHS"
  ((${#names[@]} > 0)) || die "DISK_PATHS names no path"
  df_args+=(--)
  df_args+=("${names[@]}")
fi

errors=$(mktemp) || die "cannot create a temporary file"
trap 'rm -f -- "$errors"' EXIT
if ! output=$(LC_ALL=C df -P "${df_args[@]}" 2>"$errors"); then
  reason=$(grep -v '^[[:space:]]*$' "$errors" | tail -n 1)
  die "df -P failed: ${reason:-no reason given}"
fi

fullest=""
fullest_percent=-1
count=0
line_no=0
# Filesystem 1024-blocks Used Available Capacity Mounted-on (which may hold spaces)
while read -r _fs _blocks _used _available capacity mount; do
  line_no=$((line_no + 1))
  ((line_no == 1)) && continue # header
  # Filesystems without a block count show "-".
  [[ $capacity =~ ^([0-9]+)%$ ]] || continue
  percent=${BASH_REMATCH[1]}
  if ((${#names[@]} > 0)); then
    name=${names[line_no - 2]:-$mount}
  else
    name=$mount
  fi
  count=$((count + 1))
  if ((percent > fullest_percent)); then
    fullest_percent=$percent
    fullest=$name
  fi
done <<<"$output"

((count > 0)) || die "df -P reported no filesystem with a size for: $DISK_PATHS"

message="$fullest is ${fullest_percent}% full"
if ((fullest_percent >= fail)); then
  report "$STATUS_FAILURE" "$message, failure at ${fail}%"
elif ((fullest_percent >= warn)); then
  report "$STATUS_WARNING" "$message, warning at ${warn}%"
elif ((count > 1)); then
  report "$STATUS_OK" "$message (the fullest of $count checked)"
else
  report "$STATUS_OK" "$message"
fi

exit 0
