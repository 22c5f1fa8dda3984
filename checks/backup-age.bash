#!/bin/bash

# name: Backup age
# description: Age of the newest backup file; warns over 26 hours, fails over 50 hours or when there is none
# version: 1.0
# schedule: hourly
# timeout: 30

# --- Description ---
# Finds the newest regular file matching BACKUP_GLOB (by modification time)
# and reports:
#   OK       "newest backup /var/backups/site.tar.gz is 5 hours old"
#   WARNING  the same, plus ", warning over 26 hours", older than WARN_HOURS
#   FAILURE  the same, plus ", failure over 50 hours", older than FAIL_HOURS
#   FAILURE  "no backup found matching /var/backups/*.tar*"
# Ages are whole hours, rounded down.
# Exits non-zero (an ERROR of the check) only when the configuration is
# invalid or a matching file's time cannot be read.

# --- Configuration ---
# Each value can be overridden from the environment (e.g. in a drop-in of the
# check's service unit: Environment="BACKUP_GLOB=/srv/backups/db-*.sql.gz").
#   BACKUP_GLOB  A bash glob for the backup files (default
#                /var/backups/*.tar*); spaces in it are taken literally.
#   WARN_HOURS   WARNING when the newest backup is older than this many
#                hours (default 26: a daily backup that is late).
#   FAIL_HOURS   FAILURE when it is older than this many hours (default 50:
#                two daily backups missed).
BACKUP_GLOB="${BACKUP_GLOB:-/var/backups/*.tar*}"
WARN_HOURS="${WARN_HOURS:-26}"
FAIL_HOURS="${FAIL_HOURS:-50}"

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
  echo "backup-age: $*" >&2
  exit 1
}

for var in WARN_HOURS FAIL_HOURS; do
  [[ ${!var} =~ ^[0-9]{1,6}$ ]] || die "$var must be a whole number of hours, got \"${!var}\""
done
warn=$((10#$WARN_HOURS))
fail=$((10#$FAIL_HOURS))
[[ -n $BACKUP_GLOB ]] || die "BACKUP_GLOB is empty"

# Expand the glob without splitting it on spaces; no match gives no word.
shopt -s nullglob
saved_ifs=$IFS
IFS=''
# shellcheck disable=SC2206 # the glob is meant to expand
matches=($BACKUP_GLOB)
IFS=$saved_ifs
shopt -u nullglob

newest=""
for file in "${matches[@]}"; do
  [[ -f $file ]] || continue
  if [[ -z $newest || $file -nt $newest ]]; then
    newest=$file
  fi
done

if [[ -z $newest ]]; then
  report "$STATUS_FAILURE" "no backup found matching $BACKUP_GLOB"
  exit 0
fi

mtime=$(stat -c %Y -- "$newest") || die "cannot read the time of $newest"
now=$(date +%s)
age=$((now - mtime))
# A file from the future (clock changes) counts as new.
((age < 0)) && age=0
hours=$((age / 3600))

message="newest backup $newest is $hours hours old"
if ((age > fail * 3600)); then
  report "$STATUS_FAILURE" "$message, failure over $fail hours"
elif ((age > warn * 3600)); then
  report "$STATUS_WARNING" "$message, warning over $warn hours"
else
  report "$STATUS_OK" "$message"
fi

exit 0
