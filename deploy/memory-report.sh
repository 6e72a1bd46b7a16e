#!/usr/bin/env bash
# Resident memory of services, each counted over its whole process tree (PostgreSQL is a postmaster plus one
# process per connection): RSS (counts shared memory in every process) and PSS (shares it out among the
# processes that map it now). PSS misses shared_buffers pages that only finished backends had touched, so
# "resident" is PSS plus the pages of the root's shared segments (PostgreSQL's `/dev/zero (deleted)` and SysV
# mappings; their size read through /proc/PID/map_files: root only, else "-") that no live process maps. The
# total adds resident where known, else PSS. benches/load/system.rs measures the same way.
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

shared_segments_kib() {  # resident KiB of the process's anonymous shared segments, empty if unreadable
  local range perms rest kib=0 found='' blocks
  while read -r range perms _ _ _ rest; do
    [[ $perms == *s && ( $rest == "/dev/zero (deleted)" || $rest == /SYSV* ) ]] || continue
    blocks=$(stat -L -c %b "/proc/$1/map_files/$range" 2>/dev/null) || return 0
    kib=$((kib + blocks / 2)) found=yes
  done <"/proc/$1/maps"
  [[ -z $found ]] || echo "$kib"
}

printf '%-14s %6s %10s %10s %12s\n' service procs rss_mib pss_mib resident_mib
total=0
for arg in "$@"; do
  name=${arg%%=*} root=${arg#*=}
  [[ $root =~ ^[0-9]+$ && -d /proc/$root ]] || { echo "memory-report: no process $root for $name" >&2; exit 1; }
  rss=0 pss=0 shm=0 n=0
  for pid in $(tree "$root"); do
    # Rss, Pss, and the Pss of the shared segments' mappings (header lines are "start-end perms ... [path]").
    read -r r p s < <(awk '
      $1 !~ /:$/ {seg = ($2 ~ /s$/ && ($6 " " $7 == "/dev/zero (deleted)" || $6 ~ /^\/SYSV/))}
      $1 == "Rss:" {r += $2}
      $1 == "Pss:" {p += $2; if (seg) s += $2}
      END {print r+0, p+0, s+0}' /proc/"$pid"/smaps 2>/dev/null || echo "0 0 0")
    rss=$((rss + r)) pss=$((pss + p)) shm=$((shm + s)) n=$((n + 1))
  done
  segments=$(shared_segments_kib "$root")
  if [[ -n $segments ]]; then
    unmapped=$((segments - shm))
    resident=$((pss + (unmapped > 0 ? unmapped : 0)))
  else resident=''; fi
  total=$((total + ${resident:-$pss}))
  awk -v n="$name" -v c="$n" -v r="$rss" -v p="$pss" -v res="$resident" \
    'BEGIN {printf "%-14s %6d %10.1f %10.1f %12s\n", n, c, r/1024, p/1024, res == "" ? "-" : sprintf("%.1f", res/1024)}'
done
awk -v t="$total" 'BEGIN {printf "%-14s %6s %10s %10s %12.1f\n", "total", "", "", "", t/1024}'
