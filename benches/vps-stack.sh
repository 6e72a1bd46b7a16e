# shellcheck shell=bash
# shellcheck disable=SC2016  # bash -c '...$1...' snippets expand in the child on purpose
# The benchmark's own stack under the 4 GB VPS profile (sourced by benches/run, not run):
#   - a private PostgreSQL cluster (initdb into a scratch dir, loopback, a free port) whose postgresql.conf
#     includes deploy/postgresql/dukasync-4gb.conf exactly as it ships, then a second file with only what a
#     scratch cluster must change: port, listen_addresses and unix_socket_directories;
#   - a private Redis started from deploy/redis/redis-dukasync-cache.conf as it ships, with port, pidfile,
#     logfile, dir and daemonize overridden on the command line (the file's paths are the VPS's);
#   - the server's settings from deploy/dukasync.env.example (everything but the two URLs), exported so the
#     harness's server inherits them.
# vps_stack_start exports DUKASYNC_DATABASE_URL, BENCH_PGBENCH_URL, DUKASYNC_REDIS_URL and BENCH_STACK_*;
# vps_stack_stop stops both services and removes the scratch dir (BENCH_KEEP=1 keeps the dir, with the logs).
# Needs the PostgreSQL server binaries (deploy/services.sh installs them) and redis-server; as root the cluster
# runs as the `postgres` user that Debian's package creates (initdb refuses root).

VPS_DIR='' VPS_PG_BIN='' VPS_PG_USER='' VPS_PGDATA='' VPS_REDIS_PID=''

vps_say() { echo "benches/run: $*" >&2; }
vps_fail() {  # what failed, and the end of its log (the scratch dir, logs included, goes on exit)
  vps_say "$1; the end of ${2##*/}:"
  tail -n 15 "$2" >&2 2>/dev/null || true
  return 1
}

# Same choice as deploy/services.sh: the highest /usr/lib/postgresql/N/bin with the server binaries.
vps_find_pgbin() {
  local d
  if [[ -n ${DUKASYNC_PG_BIN:-} && -x $DUKASYNC_PG_BIN/initdb ]]; then echo "$DUKASYNC_PG_BIN"; return 0; fi
  while read -r d; do
    [[ -x $d/initdb && -x $d/pg_ctl && -x $d/postgres ]] && { echo "$d"; return 0; }
  done < <(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V -r)
  return 1
}

vps_as_pg() { if [[ $VPS_PG_USER == "$(id -un)" ]]; then "$@"; else runuser -u "$VPS_PG_USER" -- "$@"; fi; }

vps_port_busy() { timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null; }

vps_free_port() {  # a random loopback port nobody listens on (a race with other programs is possible, and rare)
  local p i
  # 21000-31999: above deploy/services.sh's pairs and below the kernel's ephemeral range (32768-), whose ports
  # can be the local end of an outgoing connection that no listener test sees.
  for ((i = 0; i < 100; i++)); do
    p=$((21000 + RANDOM % 11000))
    vps_port_busy "$p" || { echo "$p"; return 0; }
  done
  return 1
}

vps_psql() {  # as the cluster's superuser, over its private socket
  vps_as_pg "$VPS_PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$VPS_DIR/pg" -p "$VPS_PG_PORT" -U postgres "$@"
}

vps_stack_start() {
  local pg_conf=$1/deploy/postgresql/dukasync-4gb.conf redis_conf=$1/deploy/redis/redis-dukasync-cache.conf
  local env_example=$1/deploy/dukasync.env.example
  VPS_PG_BIN=$(vps_find_pgbin) || { vps_say "no PostgreSQL server binaries (run deploy/services.sh start once)"; return 1; }
  command -v redis-server >/dev/null || { vps_say "no redis-server (run deploy/services.sh start once)"; return 1; }
  if ((EUID == 0)); then
    VPS_PG_USER=postgres
    id "$VPS_PG_USER" >/dev/null 2>&1 || { vps_say "running as root needs the postgres user (apt's postgresql creates it)"; return 1; }
  else
    VPS_PG_USER=$(id -un)
  fi
  VPS_DIR=$(mktemp -d "${TMPDIR:-/tmp}/dukasync-bench.XXXXXX")
  chmod 755 "$VPS_DIR"
  mkdir -p "$VPS_DIR/pg" "$VPS_DIR/redis"
  ((EUID == 0)) && chown "$VPS_PG_USER:" "$VPS_DIR/pg"
  chmod 700 "$VPS_DIR/pg"
  VPS_PGDATA=$VPS_DIR/pg/data

  local loc=C
  locale -a 2>/dev/null | grep -qixE 'c\.utf-?8' && loc=C.UTF-8
  vps_as_pg "$VPS_PG_BIN/initdb" -D "$VPS_PGDATA" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
    -E UTF8 --locale="$loc" >"$VPS_DIR/initdb.log" 2>&1 || vps_fail "initdb failed" "$VPS_DIR/initdb.log"
  VPS_PG_PORT=$(vps_free_port) || { vps_say "no free port"; return 1; }
  # The profile as it ships, then the scratch cluster's own port and socket (later settings win).
  cp "$pg_conf" "$VPS_PGDATA/dukasync-4gb.conf"
  printf "port = %s\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '%s'\n" \
    "$VPS_PG_PORT" "$VPS_DIR/pg" >"$VPS_PGDATA/bench-stack.conf"
  printf "include 'dukasync-4gb.conf'\ninclude 'bench-stack.conf'\n" >>"$VPS_PGDATA/postgresql.conf"
  ((EUID == 0)) && chown "$VPS_PG_USER:" "$VPS_PGDATA"/*.conf
  vps_as_pg "$VPS_PG_BIN/pg_ctl" -D "$VPS_PGDATA" -l "$VPS_DIR/pg/log" -w -t 60 start >/dev/null ||
    vps_fail "PostgreSQL did not start" "$VPS_DIR/pg/log"

  local password
  password=$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')
  # pg_buffercache: the harness reads how much of shared_buffers holds pages (pg_monitor may read it).
  vps_psql -d postgres -c "CREATE ROLE dukasync LOGIN PASSWORD '$password'" -c "GRANT pg_monitor TO dukasync" \
    -c "CREATE DATABASE dukasync_bench OWNER dukasync" -c "CREATE DATABASE dukasync_pgbench OWNER dukasync" >/dev/null
  vps_psql -d dukasync_bench -c "CREATE EXTENSION IF NOT EXISTS pg_buffercache" >/dev/null 2>&1 ||
    vps_say "pg_buffercache is not available: the report will not say how much of shared_buffers was used"

  local redis_port
  redis_port=$(vps_free_port) || { vps_say "no free port"; return 1; }
  redis-server "$redis_conf" --port "$redis_port" --daemonize yes --dir "$VPS_DIR/redis" \
    --pidfile "$VPS_DIR/redis/redis.pid" --logfile "$VPS_DIR/redis/redis.log" ||
    vps_fail "redis-server failed" "$VPS_DIR/redis/redis.log"
  local i
  for ((i = 0; i < 50; i++)); do
    [[ -s $VPS_DIR/redis/redis.pid ]] && timeout 2 bash -c \
      'exec 3<>"/dev/tcp/127.0.0.1/$1" && printf "PING\r\n" >&3 && read -r l <&3 && [[ $l == +PONG* ]]' _ "$redis_port" \
      2>/dev/null && break
    sleep 0.1
  done
  VPS_REDIS_PID=$(cat "$VPS_DIR/redis/redis.pid" 2>/dev/null) || vps_fail "Redis did not start" "$VPS_DIR/redis/redis.log"

  export DUKASYNC_DATABASE_URL=postgres://dukasync:$password@127.0.0.1:$VPS_PG_PORT/dukasync_bench
  export BENCH_PGBENCH_URL=postgres://dukasync:$password@127.0.0.1:$VPS_PG_PORT/dukasync_pgbench
  export DUKASYNC_REDIS_URL=redis://127.0.0.1:$redis_port/
  # The server's settings as the systemd profile ships them (the URLs are the stack's own).
  local k v settings=()
  while IFS='=' read -r k v; do
    [[ $k =~ ^DUKASYNC_[A-Z_]+$ && $k != DUKASYNC_DATABASE_URL && $k != DUKASYNC_REDIS_URL ]] || continue
    export "$k=$v"
    settings+=("$k=$v")
  done <"$env_example"
  export BENCH_STACK=vps
  local pg_version redis_version
  pg_version=$("$VPS_PG_BIN/postgres" -V | awk '{print $3}')
  redis_version=$(redis-server -v | sed -n 's/.* v=\([^ ]*\).*/\1/p')
  export BENCH_STACK_POSTGRES="private PostgreSQL $pg_version, deploy/postgresql/dukasync-4gb.conf as shipped (port, listen_addresses, unix_socket_directories set in a second included file)"
  export BENCH_STACK_REDIS="private Redis $redis_version, deploy/redis/redis-dukasync-cache.conf as shipped (port, pidfile, logfile, dir, daemonize overridden)"
  export BENCH_STACK_SERVER="deploy/dukasync.env.example: ${settings[*]}"
  BENCH_POSTMASTER_PID=$(head -1 "$VPS_PGDATA/postmaster.pid")
  export BENCH_POSTMASTER_PID BENCH_REDIS_PID=$VPS_REDIS_PID
  vps_say "VPS stack in $VPS_DIR: PostgreSQL on 127.0.0.1:$VPS_PG_PORT (pid $BENCH_POSTMASTER_PID), Redis on 127.0.0.1:$redis_port (pid $VPS_REDIS_PID)"
}

vps_stack_stop() {
  [[ -n $VPS_DIR ]] || return 0
  if [[ -n $VPS_PGDATA && -f $VPS_PGDATA/postmaster.pid ]]; then
    vps_as_pg "$VPS_PG_BIN/pg_ctl" -D "$VPS_PGDATA" -m fast -w -t 30 stop >/dev/null 2>&1 ||
      vps_as_pg "$VPS_PG_BIN/pg_ctl" -D "$VPS_PGDATA" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  local pid=${VPS_REDIS_PID:-} i
  [[ -n $pid ]] || pid=$(cat "$VPS_DIR/redis/redis.pid" 2>/dev/null) || true
  if [[ -n $pid ]] && grep -qa redis "/proc/$pid/cmdline" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do grep -qa redis "/proc/$pid/cmdline" 2>/dev/null || break; sleep 0.1; done
  fi
  if [[ -n ${BENCH_KEEP:-} ]]; then
    vps_say "kept $VPS_DIR (PostgreSQL and Redis logs)"
  else
    rm -rf "$VPS_DIR"
  fi
  VPS_DIR=''
}
