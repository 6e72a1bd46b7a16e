#!/usr/bin/env bash
# What happens when the cache shares Django-RQ's Redis: measured on a private redis-server (loopback, free
# port, no files), for deploy/REDIS-SHARING.md. The "queue" is 2,000 queued jobs as RQ stores them (a job hash
# of about 1 KB each plus the queue list); the "cache" then writes 4 KB entries, 64 MB in all, into a 32 MB
# instance, as a busy cache would. Run under each policy:
#   allkeys-lru  (what a cache needs)  -> how many queued jobs were evicted, i.e. silently lost;
#   noeviction   (what a queue needs)  -> how many cache writes, and then job enqueues, were refused;
#   volatile-lru (evicts only keys with a TTL) -> the queue survives here, but see deploy/REDIS-SHARING.md.
# Then the persistence a queue needs (appendonly yes, appendfsync everysec) with the same cache traffic: how
# much the cache adds to the append-only file and what a rewrite's fork costs.
#   deploy/redis/sharing-experiment.sh
set -euo pipefail
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cli() { redis-cli -p "$port" "$@"; }

run() {
  local policy=$1 pid
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --maxmemory 32mb \
    --maxmemory-policy "$policy" --daemonize no >/dev/null &
  pid=$!
  until cli ping >/dev/null 2>&1; do sleep 0.05; done
  local job value refused_cache
  job=$(printf 'x%.0s' {1..1000})
  for i in $(seq 2000); do
    printf 'HSET rq:job:%d status queued data %s\r\nRPUSH rq:queue:default %d\r\n' "$i" "$job" "$i"
  done | cli --pipe >/dev/null
  value=$(head -c 3072 /dev/urandom | base64 -w0)  # 4 KB that does not compress: the worst case for the disk
  refused_cache=$(for i in $(seq 16384); do printf 'SET cache:%d %s EX 900\r\n' "$i" "$value"; done |
    { cli --pipe 2>&1 || true; } | sed -n 's/.*errors: \([0-9]*\).*/\1/p')
  local jobs queue refused_jobs
  jobs=$(cli --scan --pattern 'rq:job:*' | wc -l)
  queue=$(cli llen rq:queue:default)
  refused_jobs=$(for i in $(seq 2001 2100); do printf 'RPUSH rq:queue:default %d\r\n' "$i"; done |
    { cli --pipe 2>&1 || true; } | sed -n 's/.*errors: \([0-9]*\).*/\1/p')
  printf '%-12s queued job hashes left %4d of 2000, queue list %s; cache writes refused %5s of 16384; new enqueues refused %3s of 100; used_memory %s\n' \
    "$policy" "$jobs" "$([[ $queue == 0 ]] && echo evicted || echo "kept ($queue)")" "$refused_cache" "$refused_jobs" \
    "$(cli info memory | sed -n 's/^used_memory_human:\(.*\)\r$/\1/p')"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}
run allkeys-lru
run noeviction
run volatile-lru

persisted() {
  local dir pid value
  dir=$(mktemp -d)
  redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --save '' --appendonly yes --appendfsync everysec \
    --maxmemory 256mb --maxmemory-policy volatile-lru --daemonize no >/dev/null &
  pid=$!
  until cli ping >/dev/null 2>&1; do sleep 0.05; done
  value=$(head -c 3072 /dev/urandom | base64 -w0)
  for i in $(seq 16384); do printf 'SET cache:%d %s EX 900\r\n' "$i" "$value"; done | cli --pipe >/dev/null
  sleep 1.5  # appendfsync everysec: let the last second reach the file
  local aof
  aof=$(du -sm "$dir" | cut -f1)
  cli bgrewriteaof >/dev/null
  while [[ $(cli info persistence | sed -n 's/^aof_rewrite_in_progress:\(.\).*/\1/p') == 1 ]]; do sleep 0.1; done
  printf 'appendonly   64 MB of cache writes: append-only files %s MB on disk, %s forks (automatic rewrites + 1), the last forked in %s us and copied %s KB on write\n' \
    "$aof" "$(cli info stats | sed -n 's/^total_forks:\(.*\)\r$/\1/p')" \
    "$(cli info stats | sed -n 's/^latest_fork_usec:\(.*\)\r$/\1/p')" \
    "$(( $(cli info persistence | sed -n 's/^aof_last_cow_size:\(.*\)\r$/\1/p') / 1024 ))"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -rf "$dir"
}
persisted
