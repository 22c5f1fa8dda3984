#!/bin/bash

# name: TLS expiry
# description: Days until a TLS certificate expires (a PEM file or a host:port); warns under 21 days, fails under 7
# version: 1.0
# schedule: daily
# timeout: 30

# --- Description ---
# Reads the end date of a certificate, from a PEM file or from what a TLS
# service presents, and reports:
#   OK       "certificate for example.org:443 expires in 64 days (2027-01-28 12:00 UTC)"
#   WARNING  the same, under WARN_DAYS days
#   FAILURE  the same, under FAIL_DAYS days; or
#            "certificate for TARGET expired 3 days ago (DATE)"; or
#            "cannot read the certificate of TARGET" (file missing or not a
#            certificate, service unreachable or not speaking TLS: a service
#            whose certificate cannot be read is failing)
# Only the certificate's dates are looked at: its chain and name are not
# verified. The only network access is the connection to TLS_TARGET.
# Exits non-zero (an ERROR of the check) only when the configuration is
# invalid or openssl is missing.

# --- Configuration ---
# Each value can be overridden from the environment (e.g. in a drop-in of the
# check's service unit: Environment=TLS_TARGET=example.org:443).
#   TLS_TARGET       A PEM certificate file (any target with a "/" in it, or
#                    an existing file), or host:port (default localhost:443;
#                    port 443 when none is given; [::1]:443 for IPv6).
#   WARN_DAYS        WARNING under this many days left (default 21).
#   FAIL_DAYS        FAILURE under this many days left (default 7).
#   CONNECT_TIMEOUT  Seconds allowed to fetch a service's certificate
#                    (default 10).
TLS_TARGET="${TLS_TARGET:-localhost:443}"
WARN_DAYS="${WARN_DAYS:-21}"
FAIL_DAYS="${FAIL_DAYS:-7}"
CONNECT_TIMEOUT="${CONNECT_TIMEOUT:-10}"

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
  echo "tls-expiry: $*" >&2
  exit 1
}

for var in WARN_DAYS FAIL_DAYS CONNECT_TIMEOUT; do
  [[ ${!var} =~ ^[0-9]{1,6}$ ]] || die "$var must be a whole number, got \"${!var}\""
done
warn=$((10#$WARN_DAYS))
fail=$((10#$FAIL_DAYS))
[[ -n $TLS_TARGET ]] || die "TLS_TARGET is empty"
command -v openssl >/dev/null 2>&1 || die "openssl not found"

target=$TLS_TARGET
if [[ $target == */* || -f $target ]]; then
  enddate=$(openssl x509 -enddate -noout -in "$target" 2>/dev/null)
else
  # host:port, [v6-address]:port, or a host alone (port 443).
  if [[ $target =~ ^\[([^]]+)\]:([0-9]+)$ ]]; then
    host=${BASH_REMATCH[1]}
  elif [[ $target =~ ^([^:]+):([0-9]+)$ ]]; then
    host=${BASH_REMATCH[1]}
  elif [[ $target =~ ^[^:]+$ ]]; then
    host=$target
    target="$target:443"
  else
    die "TLS_TARGET must be a file or host:port, got \"$TLS_TARGET\""
  fi
  enddate=$(timeout "$CONNECT_TIMEOUT" openssl s_client -connect "$target" -servername "$host" </dev/null 2>/dev/null |
    openssl x509 -enddate -noout 2>/dev/null)
fi

# notAfter=Nov 28 08:07:59 2026 GMT
enddate=${enddate#notAfter=}
if [[ -z $enddate ]] || ! end=$(date -u -d "$enddate" +%s 2>/dev/null); then
  report "$STATUS_FAILURE" "cannot read the certificate of $target"
  exit 0
fi

now=$(date +%s)
when=$(date -u -d "@$end" '+%Y-%m-%d %H:%M UTC')
if ((end <= now)); then
  report "$STATUS_FAILURE" "certificate for $target expired $(((now - end) / 86400)) days ago ($when)"
  exit 0
fi
# Whole days left, rounded down: "under N days" is the same as "under N*86400 s".
days=$(((end - now) / 86400))
message="certificate for $target expires in $days days ($when)"
if ((days < fail)); then
  report "$STATUS_FAILURE" "$message"
elif ((days < warn)); then
  report "$STATUS_WARNING" "$message"
else
  report "$STATUS_OK" "$message"
fi

exit 0
