#!/usr/bin/env bash
# shellcheck disable=SC2016  # bash -c '...$1...' snippets expand in the child on purpose
# Private PostgreSQL + Redis for this checkout: loopback only, own ports, all
# state under $DUKASYNC_HOME. Never touches system clusters (5432) or redis (6379).
#   deploy/services.sh start|stop|status|env      (eval "$(deploy/services.sh env)")
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
HOME_DIR=${DUKASYNC_HOME:-$ROOT/.dukasync}
[[ $HOME_DIR == /* ]] || HOME_DIR=$PWD/$HOME_DIR   # we cd / below, so make it absolute
PGROOT=$HOME_DIR/pg PGDATA=$HOME_DIR/pg/data RDIR=$HOME_DIR/redis TLS_DIR=$HOME_DIR/tls
ENV_FILE=$HOME_DIR/env PORTS_FILE=$HOME_DIR/ports PW_FILE=$HOME_DIR/pg-password
# Stray libpq settings from the caller's shell must not redirect our admin psql.
unset PGHOST PGPORT PGUSER PGDATABASE PGPASSWORD PGSERVICE PGOPTIONS
# The postgres run user may not be able to read the caller's cwd; all paths are absolute.
cd /

say() { echo "services: $*" >&2; }
die() { say "error: $*"; exit 1; }

# --- binaries -----------------------------------------------------------------
find_pgbin() {  # highest /usr/lib/postgresql/N/bin that has the server binaries
  local d
  while read -r d; do
    [[ -x $d/initdb && -x $d/pg_ctl && -x $d/postgres ]] && { echo "$d"; return 0; }
  done < <(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V -r)
  return 1
}

install_missing() {
  local pkgs=() sudo=()
  find_pgbin >/dev/null || pkgs+=(postgresql)
  command -v redis-server >/dev/null || pkgs+=(redis-server)
  # The deploy tests (tests/ops/nginx.rs, tests/ops/backup_restore.rs) run nginx, openssl and curl.
  { command -v nginx || [[ -x /usr/sbin/nginx ]]; } >/dev/null || pkgs+=(nginx)
  command -v openssl >/dev/null || pkgs+=(openssl)
  command -v curl >/dev/null || pkgs+=(curl)
  ((${#pkgs[@]})) || return 0
  if ((EUID != 0)); then
    command -v sudo >/dev/null || die "need to install ${pkgs[*]} but not root and no sudo"
    sudo=(sudo)
  fi
  say "installing ${pkgs[*]} with apt (may wait up to 10 min for the dpkg lock)"
  local apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600)
  # A failed update (e.g. another job holds the lists lock) is not fatal: the
  # existing package lists are usually good enough to install from.
  "${apt[@]}" update -q >&2 || say "apt-get update failed; trying install with existing lists"
  "${apt[@]}" install -y -q "${pkgs[@]}" >&2 || die "apt-get install ${pkgs[*]} failed"
}

# --- ports --------------------------------------------------------------------
port_busy() { timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null; }
who_has() {  # best effort: ' ("proc",pid=N)'
  local w; w=$(ss -Hltnp "sport = :$1" 2>/dev/null | grep -o '"[^"]*",pid=[0-9]*' | head -1) || true
  [[ -z $w ]] || echo " ($w)"
}

load_ports() {  # the ports persisted by the last start
  PG_PORT='' REDIS_PORT='' REDIS_TLS_PORT=''
  # shellcheck disable=SC1090
  [[ -f $PORTS_FILE ]] && . "$PORTS_FILE"
  return 0
}

save_ports() {
  printf 'PG_PORT=%s\nREDIS_PORT=%s\nREDIS_TLS_PORT=%s\n' "$PG_PORT" "$REDIS_PORT" "${REDIS_TLS_PORT:-}" >"$PORTS_FILE"
}
choose_ports() {  # env overrides win over persisted ports, and get persisted
  load_ports
  PG_PORT=${DUKASYNC_PG_PORT:-$PG_PORT} REDIS_PORT=${DUKASYNC_REDIS_PORT:-$REDIS_PORT}
  if [[ -z $PG_PORT || -z $REDIS_PORT ]]; then
    # Hash DUKASYNC_HOME (which defaults to <repo>/.dukasync) so two checkouts,
    # or two homes of one checkout, get different pairs; on first start skip
    # pairs that are already in use. The pairs (20000-20999) lie below the
    # kernel's ephemeral range (32768-60999 by default): a port in that range
    # can be the local end of any outgoing connection, which no listener test
    # sees, and postgres then fails to bind it (this happened in CI).
    local off i p
    off=$(( $(printf '%s' "$HOME_DIR" | cksum | cut -d' ' -f1) % 500 ))
    for ((i = 0; i < 500; i++)); do
      p=$((20000 + 2 * ((off + i) % 500)))
      port_busy "$p" || port_busy $((p + 1)) || break
    done
    PG_PORT=${PG_PORT:-$p} REDIS_PORT=${REDIS_PORT:-$((p + 1))}
    # Persist a hashed pick at once: a half-failed start must find the same ports again.
    [[ -n ${DUKASYNC_PG_PORT:-}${DUKASYNC_REDIS_PORT:-} ]] || save_ports
  fi
  # Redis' TLS port: 1000 above the pair (21000-21999 for hashed pairs: no other checkout's pair, still below
  # the ephemeral range). A ports file of an older start has none; it is added now.
  REDIS_TLS_PORT=${DUKASYNC_REDIS_TLS_PORT:-${REDIS_TLS_PORT:-$((PG_PORT + 1000))}}
  [[ $PG_PORT =~ ^[0-9]+$ && $REDIS_PORT =~ ^[0-9]+$ && $REDIS_TLS_PORT =~ ^[0-9]+$ && $PG_PORT != "$REDIS_PORT" &&
    $REDIS_TLS_PORT != "$PG_PORT" && $REDIS_TLS_PORT != "$REDIS_PORT" ]] ||
    die "bad ports: pg=$PG_PORT redis=$REDIS_PORT redis-tls=$REDIS_TLS_PORT"
}

# --- TLS ----------------------------------------------------------------------
# A private CA and one server certificate (127.0.0.1 and localhost) for both services, made once and kept in
# $TLS_DIR: the TLS tests (tests/api/tls.rs) trust ca.crt. Plain connections keep working on both services.
tls_certs() {
  mkdir -p "$TLS_DIR"
  if [[ ! -s $TLS_DIR/ca.crt || ! -s $TLS_DIR/ca.key ]]; then
    say "making a private CA in $TLS_DIR"
    (umask 077 && openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -days 3650 \
      -subj "/CN=dukasync dev CA" -keyout "$TLS_DIR/ca.key" -out "$TLS_DIR/ca.crt" 2>/dev/null) ||
      die "openssl could not make the CA in $TLS_DIR"
    rm -f "$TLS_DIR/server.crt"  # signed by an older CA
  fi
  if [[ ! -s $TLS_DIR/server.crt || ! -s $TLS_DIR/server.key ]]; then
    say "making the services' TLS certificate (127.0.0.1, localhost)"
    (umask 077 && openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -subj "/CN=127.0.0.1" \
      -keyout "$TLS_DIR/server.key" -out "$TLS_DIR/server.csr" 2>/dev/null &&
      printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >"$TLS_DIR/server.ext" &&
      openssl x509 -req -in "$TLS_DIR/server.csr" -CA "$TLS_DIR/ca.crt" -CAkey "$TLS_DIR/ca.key" \
        -CAcreateserial -days 3650 -extfile "$TLS_DIR/server.ext" -out "$TLS_DIR/server.crt" 2>/dev/null) ||
      die "openssl could not make the server certificate in $TLS_DIR"
    rm -f "$TLS_DIR/server.csr" "$TLS_DIR/server.ext" "$TLS_DIR/ca.srl"
  fi
  chmod 644 "$TLS_DIR/ca.crt" "$TLS_DIR/server.crt"
}

# --- postgres -----------------------------------------------------------------
pick_pg_user() {  # the owner of an existing cluster wins; initdb refuses root
  if [[ -d $PGROOT ]]; then PG_USER=$(stat -c %U "$PGROOT")
  elif ((EUID != 0)); then PG_USER=$(id -un)
  elif id postgres >/dev/null 2>&1; then PG_USER=postgres
  else PG_USER=dukasync-pg; fi
  if ((EUID != 0)) && [[ $PG_USER != "$(id -un)" ]]; then
    die "$PGROOT belongs to $PG_USER; run as root or as $PG_USER"
  fi
}
as_pg() { if [[ $PG_USER == "$(id -un)" ]]; then "$@"; else runuser -u "$PG_USER" -- "$@"; fi; }
pg_running() { [[ -f $PGDATA/PG_VERSION ]] && as_pg "$PGBIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; }
pg_live_port() { sed -n 4p "$PGDATA/postmaster.pid" 2>/dev/null; }

check_traversable() {  # the run user must reach $PGROOT through every parent dir
  as_pg test -w "$PGROOT" -a -x "$PGROOT" && return 0
  local d=$PGROOT bad=$PGROOT
  while [[ $d != / ]]; do d=$(dirname "$d"); as_pg test -x "$d" || bad=$d; done  # topmost blocker
  die "user $PG_USER cannot reach $PGROOT: $bad is not traversable (chmod o+x it, or set DUKASYNC_HOME elsewhere)"
}

pg_write_conf() {
  local sockdir=${PGROOT//"'"/"''"}
  # The server's copy of the certificate and key, owned by the run user (postgres refuses a key others can read).
  install -m 644 "$TLS_DIR/server.crt" "$PGDATA/server.crt"
  install -m 600 "$TLS_DIR/server.key" "$PGDATA/server.key"
  ((EUID == 0)) && chown "$PG_USER:" "$PGDATA/server.crt" "$PGDATA/server.key"
  # Rewritten each start so port/socket changes apply. fsync stays on: benchmarks need durability. ssl = on
  # offers TLS (sslmode=prefer and stricter use it); pg_hba's host lines still accept plain connections.
  as_pg tee "$PGDATA/dukasync.conf" >/dev/null <<EOF
port = $PG_PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$sockdir'
max_connections = 200
shared_buffers = 128MB
fsync = on
password_encryption = 'scram-sha-256'
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
EOF
}

pg_start() {
  if ((EUID == 0)) && ! id "$PG_USER" >/dev/null 2>&1; then
    say "creating system user $PG_USER to run postgres (initdb refuses root)"
    useradd --system --no-create-home --shell /usr/sbin/nologin "$PG_USER"
  fi
  mkdir -p "$PGROOT"
  ((EUID == 0)) && chown "$PG_USER:" "$PGROOT"
  chmod 700 "$PGROOT"  # socket dir + local trust auth: only the run user (and root) may connect
  check_traversable
  # Unix socket paths are limited to 107 bytes.
  ((${#PGROOT} + 18 < 108)) || die "socket path under $PGROOT too long; set a shorter DUKASYNC_HOME"
  if [[ ! -f $PGDATA/PG_VERSION ]]; then
    local loc=C
    locale -a 2>/dev/null | grep -qixE 'c\.utf-?8' && loc=C.UTF-8
    say "initdb $PGDATA (locale $loc)"
    as_pg "$PGBIN/initdb" -D "$PGDATA" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
      -E UTF8 --locale="$loc" >"$PGROOT/initdb.log" 2>&1 || die "initdb failed, see $PGROOT/initdb.log"
    echo "include 'dukasync.conf'" | as_pg tee -a "$PGDATA/postgresql.conf" >/dev/null
  fi
  if pg_running; then
    [[ $(pg_live_port) == "$PG_PORT" ]] || die "postgres already running on port $(pg_live_port), not $PG_PORT; run stop first"
    say "postgres already running on 127.0.0.1:$PG_PORT"
    # Started by an older version of this script: TLS is turned on by a reload (no restart needed).
    if [[ $(as_pg "$PSQL" -X -At -h "$PGROOT" -p "$PG_PORT" -U postgres -d postgres -c 'SHOW ssl' 2>/dev/null) != on ]]; then
      pg_write_conf
      as_pg "$PGBIN/pg_ctl" -D "$PGDATA" reload >/dev/null || die "pg_ctl reload failed, see $PGROOT/log"
      say "postgres: TLS turned on (reloaded)"
    fi
  else
    port_busy "$PG_PORT" && die "port $PG_PORT is in use by another process$(who_has "$PG_PORT"); set DUKASYNC_PG_PORT"
    pg_write_conf
    # 9>&-: daemons must not inherit (and so hold forever) our lock fd.
    if ! as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -l "$PGROOT/log" -w -t 60 start >/dev/null 9>&-; then
      # The listener check above cannot see a port held as the local end of an outgoing connection.
      tail -n 20 "$PGROOT/log" 2>/dev/null | grep -q 'could not bind' &&
        die "postgres could not bind port $PG_PORT (in use, perhaps by an outgoing connection); set DUKASYNC_PG_PORT to a free port, or remove $PORTS_FILE to pick a new pair"
      die "postgres failed to start, see $PGROOT/log"
    fi
    say "postgres started on 127.0.0.1:$PG_PORT"
  fi
  # Role + database every start: idempotent, and keeps the role's password equal to the file.
  [[ -s $PW_FILE ]] || (umask 077 && head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$PW_FILE")
  chmod 600 "$PW_FILE"
  PASSWORD=$(<"$PW_FILE")
  as_pg "$PSQL" -X -q -v ON_ERROR_STOP=1 -h "$PGROOT" -p "$PG_PORT" -U postgres -d postgres >/dev/null <<EOF ||
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'dukasync') THEN CREATE ROLE dukasync; END IF;
  ALTER ROLE dukasync LOGIN CREATEDB CREATEROLE REPLICATION PASSWORD '$PASSWORD';
END \$\$;
-- Durability beyond the primary (tests/api/durability.rs, deploy/BACKUP.md): the server reads the standbys'
-- positions, and the tests stream WAL with pg_receivewal as this role.
GRANT pg_monitor TO dukasync;
SELECT 'CREATE DATABASE dukasync OWNER dukasync' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'dukasync')\gexec
EOF
    die "could not create role/database dukasync"
}

# --- redis --------------------------------------------------------------------
is_redis() { grep -qa redis "/proc/$1/cmdline" 2>/dev/null; }  # false for zombies / reused pids
redis_pid() {  # pid from our pidfile, only if that process is still a redis
  local p
  p=$(cat "$RDIR/redis.pid" 2>/dev/null) || return 1
  [[ $p =~ ^[0-9]+$ ]] && is_redis "$p" && echo "$p"
}
redis_ping() {
  timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" && printf "PING\r\n" >&3 && read -r l <&3 && [[ $l == +PONG* ]]' _ "$1" 2>/dev/null
}

redis_stop() {
  local pid i
  pid=$(redis_pid) || return 1
  kill -TERM "$pid"
  for ((i = 0; i < 150; i++)); do is_redis "$pid" || break; sleep 0.2; done
  is_redis "$pid" && die "redis (pid $pid) did not exit after 30s"
  rm -f "$RDIR/redis.pid"
}

redis_start() {
  mkdir -p "$RDIR"
  if redis_pid >/dev/null; then
    redis_ping "$REDIS_PORT" || die "our redis (pid $(redis_pid)) does not answer on port $REDIS_PORT; run stop first"
    if port_busy "$REDIS_TLS_PORT"; then
      say "redis already running on 127.0.0.1:$REDIS_PORT (TLS $REDIS_TLS_PORT)"; return 0
    fi
    # Started by an older version of this script, without the TLS port. It is only a cache: restart it.
    say "restarting redis to add its TLS port"
    redis_stop
  fi
  port_busy "$REDIS_PORT" && die "port $REDIS_PORT is in use by another process$(who_has "$REDIS_PORT"); set DUKASYNC_REDIS_PORT"
  port_busy "$REDIS_TLS_PORT" &&
    die "port $REDIS_TLS_PORT is in use by another process$(who_has "$REDIS_TLS_PORT"); set DUKASYNC_REDIS_TLS_PORT"
  # The TLS port beside the plain one; clients need not present a certificate (--tls-auth-clients no).
  redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
    --tls-port "$REDIS_TLS_PORT" --tls-cert-file "$TLS_DIR/server.crt" --tls-key-file "$TLS_DIR/server.key" \
    --tls-ca-cert-file "$TLS_DIR/ca.crt" --tls-auth-clients no \
    --dir "$RDIR" --pidfile "$RDIR/redis.pid" --logfile "$RDIR/redis.log" \
    --maxmemory 256mb --maxmemory-policy allkeys-lru 9>&- || die "redis-server failed, see $RDIR/redis.log"
  local i
  for ((i = 0; i < 50; i++)); do redis_ping "$REDIS_PORT" && break; sleep 0.2; done
  redis_ping "$REDIS_PORT" || die "redis did not answer on port $REDIS_PORT, see $RDIR/redis.log"
  port_busy "$REDIS_TLS_PORT" || die "redis does not listen on its TLS port $REDIS_TLS_PORT, see $RDIR/redis.log"
  say "redis started on 127.0.0.1:$REDIS_PORT (TLS $REDIS_TLS_PORT)"
}

# --- commands -----------------------------------------------------------------
lock() { mkdir -p "$HOME_DIR" && exec 9>"$HOME_DIR/.lock" && flock 9; }  # serialize start/stop

cmd_start() {
  install_missing
  [[ -d $HOME_DIR ]] || { mkdir -p "$HOME_DIR"; chmod 755 "$HOME_DIR"; }  # postgres user must traverse it
  lock
  PGBIN=$(find_pgbin) || die "no /usr/lib/postgresql/*/bin/initdb after install"; PSQL=$PGBIN/psql; [[ -x $PSQL ]] || PSQL=$(command -v psql) || die "psql not found"
  choose_ports; pick_pg_user; tls_certs; pg_start; redis_start
  save_ports  # overrides are persisted only once they worked
  (umask 077 && cat >"$ENV_FILE" <<EOF
DUKASYNC_DATABASE_URL=postgres://dukasync:$PASSWORD@127.0.0.1:$PG_PORT/dukasync
DUKASYNC_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/
DUKASYNC_PG_PORT=$PG_PORT
DUKASYNC_REDIS_PORT=$REDIS_PORT
DUKASYNC_PG_BIN=$PGBIN
DUKASYNC_TEST_TLS_CA=$TLS_DIR/ca.crt
DUKASYNC_TEST_REDIS_TLS_URL=rediss://127.0.0.1:$REDIS_TLS_PORT/
EOF
  )
  echo "DUKASYNC_DATABASE_URL=postgres://dukasync:***@127.0.0.1:$PG_PORT/dukasync"
  echo "DUKASYNC_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/"
  say "full URLs (with password) in $ENV_FILE; use: eval \"\$(${DUKASYNC_HOME:+DUKASYNC_HOME=$HOME_DIR }$0 env)\""
}

cmd_stop() {
  [[ -d $HOME_DIR ]] || { say "nothing to stop ($HOME_DIR does not exist)"; return 0; }
  lock
  if [[ -d $PGROOT ]] && PGBIN=$(find_pgbin) && pick_pg_user && pg_running; then
    as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null || die "pg_ctl stop failed, see $PGROOT/log"
    say "postgres stopped"
  else say "postgres not running"; fi
  if redis_stop; then say "redis stopped"
  else say "redis not running"; fi
}

cmd_status() {  # exit 0 only if both are running
  local rc=0 pid
  load_ports
  if [[ -d $PGROOT ]] && PGBIN=$(find_pgbin) && pick_pg_user && pg_running; then
    echo "postgres: running on 127.0.0.1:$(pg_live_port) (data $PGDATA)"
  else echo "postgres: stopped${PG_PORT:+ (port $PG_PORT)}"; rc=3; fi
  if pid=$(redis_pid) && redis_ping "$REDIS_PORT"; then
    echo "redis:    running on 127.0.0.1:$REDIS_PORT, TLS ${REDIS_TLS_PORT:-?} (pid $pid)"
  else echo "redis:    stopped${REDIS_PORT:+ (port $REDIS_PORT)}"; rc=3; fi
  return "$rc"
}

cmd_env() {
  [[ -r $ENV_FILE ]] || die "no $ENV_FILE; run '$0 start' first"
  local k v
  while IFS='=' read -r k v; do [[ -n $k ]] && printf 'export %s=%q\n' "$k" "$v"; done <"$ENV_FILE"
}

case ${1:-} in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  env) cmd_env ;;
  *) echo "usage: $0 start|stop|status|env" >&2; exit 2 ;;
esac
