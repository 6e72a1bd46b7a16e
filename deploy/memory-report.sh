#!/usr/bin/env bash
# Resident memory of services, each counted over its whole process tree (PostgreSQL is a postmaster plus one
# process per connection): RSS (counts shared memory in every process) and PSS (shares it out, so the PSS of a
# tree is what it really occupies; shared_buffers appear in PSS only as far as they have been touched).
#
#   deploy/memory-report.sh dukasync=PID postgres=PID redis=PID ...     (PIDs of each tree's root)
#   deploy/memory-report.sh dukasync=$(systemctl show -p MainPID --value dukasync@8080) \
#                           postgres=$(head -1 /var/lib/postgresql/15/main/postmaster.pid) \
#                           redis-cache=$(systemctl show -p MainPID --value redis-server@dukasync-cache)
# Needs to read /proc/PID/smaps_rollup of those processes (root, or their user).
set -euo pipefail

tree() {  # the pid and all its descendants
  local pid=$1 child
  echo "$pid"
  # shellcheck disable=SC2013  # the file is a space-separated list of pids
  for child in $(cat /proc/"$pid"/task/*/children 2>/dev/null); do tree "$child"; done
}

printf '%-14s %6s %10s %10s\n' service procs rss_mib pss_mib
total_pss=0
for arg in "$@"; do
  name=${arg%%=*} root=${arg#*=}
  [[ $root =~ ^[0-9]+$ && -d /proc/$root ]] || { echo "memory-report: no process $root for $name" >&2; exit 1; }
  rss=0 pss=0 n=0
  for pid in $(tree "$root"); do
    read -r r p < <(awk '/^Rss:/ {r=$2} /^Pss:/ {p=$2} END {print r+0, p+0}' /proc/"$pid"/smaps_rollup 2>/dev/null || echo "0 0")
    rss=$((rss + r)) pss=$((pss + p)) n=$((n + 1))
  done
  total_pss=$((total_pss + pss))
  awk -v n="$name" -v c="$n" -v r="$rss" -v p="$pss" 'BEGIN {printf "%-14s %6d %10.1f %10.1f\n", n, c, r/1024, p/1024}'
done
awk -v p="$total_pss" 'BEGIN {printf "%-14s %6s %10s %10.1f\n", "total", "", "", p/1024}'
