#!/usr/bin/env bash
# Continuous archiving and point-in-time restore of the whole PostgreSQL cluster with PostgreSQL's own tools
# (deploy/BACKUP.md, "Losing less than a day"; the lost-disk steps are in deploy/RUNBOOK.md):
#
#   deploy/pitr.sh setup                 checks wal_level/max_wal_senders/max_replication_slots, creates the
#                                        physical replication slot dukasync_wal if missing
#   deploy/pitr.sh receive               runs pg_receivewal in the foreground (dukasync-walreceive.service)
#   deploy/pitr.sh base                  a pg_basebackup, checked with pg_verifybackup, then retention
#   deploy/pitr.sh restore DATA_DIR [--time 'YYYY-MM-DD HH:MM:SS+00']
#                                        newest base (ended before the time) + all archived WAL into an empty
#                                        DATA_DIR, ready for `systemctl start postgresql`
#   deploy/pitr.sh after-restore DATA_DIR
#                                        once that PostgreSQL runs: waits for the end of recovery, removes the
#                                        recovery settings, starts a new archive generation and re-creates the slot
#   deploy/pitr.sh restart-archive       after the slot was lost (status says LOST): a new archive generation
#   deploy/pitr.sh verify                pg_verifybackup + a trial restore of the newest base and all WAL
#   deploy/pitr.sh status                receiver lag, the slot's retained WAL, archive sizes (exit 3: not streaming)
#
# Settings (environment, or /etc/dukasync/pitr.env in the systemd units):
#   DUKASYNC_PITR_DIR         the archive: base/, wal/ (default /var/backups/dukasync-pitr; another disk!)
#   DUKASYNC_PITR_CONN        libpq connection (key=value words or a postgres:// URL, no password: use ~/.pgpass
#                             or PGPASSWORD) of a role with REPLICATION and pg_monitor
#                             (default: host=127.0.0.1 port=5432 user=dukasync_backup)
#   DUKASYNC_PITR_KEEP_BASES  base backups kept (default 4); WAL older than the oldest kept one is removed
#   DUKASYNC_PG_BIN           where the PostgreSQL programs are (default: the newest /usr/lib/postgresql/N/bin, then PATH)
#
# Run it as the user PostgreSQL runs as (postgres): a restored data directory must belong to that user, and the
# restored server's restore_command reads the archive.
set -euo pipefail
[[ -z ${DUKASYNC_PITR_TRACE:-} ]] || set -x
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=pg-common.sh
. "$HERE/pg-common.sh"

SLOT=dukasync_wal
DIR=${DUKASYNC_PITR_DIR:-/var/backups/dukasync-pitr}
CONN=${DUKASYNC_PITR_CONN:-host=127.0.0.1 port=5432 user=dukasync_backup}
KEEP=${DUKASYNC_PITR_KEEP_BASES:-4}
[[ $DIR == /* ]] || DIR=$PWD/$DIR
WAL=$DIR/wal BASE=$DIR/base
INFO=dukasync-base.info # written into each base directory after it was verified (not in its manifest)
# Lines of postgresql.auto.conf that `restore` writes and `after-restore` removes.
RECOVERY_KEYS='restore_command|recovery_target_time|recovery_target_action|recovery_target_timeline'

# PostgreSQL programs: DUKASYNC_PG_BIN, else the newest /usr/lib/postgresql/N/bin (Debian keeps pg_ctl,
# pg_verifybackup and friends there, not on PATH), else PATH. One version for all of them.
pg_prog() {
  if [[ -z ${DUKASYNC_PG_BIN:-} ]]; then
    local d
    d=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V -r | head -1)
    [[ -x $d/$1 ]] && { echo "$d/$1"; return 0; }
  fi
  pg_tool "$1"
}

# CONN with one more connection parameter.
conn_with() {
  if [[ $CONN == postgres://* || $CONN == postgresql://* ]]; then
    if [[ $CONN == *\?* ]]; then echo "$CONN&$1=$2"; else echo "$CONN?$1=$2"; fi
  else
    echo "$CONN $1=$2"
  fi
}

sql() { # one query on the primary's postgres database, unaligned rows
  "$(pg_prog psql)" -X -A -t -q -v ON_ERROR_STOP=1 -d "$(conn_with dbname postgres)" -c "$1"
}

now_ns() { date -u +%s%N; }
elapsed() { local ms=$((($(now_ns) - $1) / 1000000)); printf '%d.%03d s' $((ms / 1000)) $((ms % 1000)); }

# Holds an exclusive lock for the rest of this process (and of what it execs): fd 8 receiver, 7 base, 6 verify.
lock_or_die() { # FD NAME MESSAGE
  mkdir -p "$DIR"
  eval "exec $1>\"\$DIR/.$2.lock\""
  flock -n "$1" || die "$3"
}

refuse_root() {
  ((EUID != 0)) || die "run as the user PostgreSQL runs as (sudo -u postgres $0 ...), not as root"
}

# --- WAL file names -----------------------------------------------------------------------------------
WAL_SEG_SIZE=$((16 * 1024 * 1024))
read_seg_size() { # from a data directory's control file
  local s
  s=$("$(pg_prog pg_controldata)" "$1" | sed -n 's/^Bytes per WAL segment: *//p')
  [[ $s =~ ^[0-9]+$ ]] && WAL_SEG_SIZE=$s
}
seg_of_name() { # 24-hex WAL file name -> segment number
  local n=$1
  echo $((16#${n:8:8} * (0x100000000 / WAL_SEG_SIZE) + 16#${n:16:8}))
}
lsn_of_seg() { # segment number -> the LSN of its first byte, as X/Y
  local lsn=$(($1 * WAL_SEG_SIZE))
  printf '%X/%X\n' $((lsn >> 32)) $((lsn & 0xffffffff))
}
is_wal_name() { [[ $1 =~ ^[0-9A-F]{24}(\.partial)?$ ]]; }

# --- base backups -------------------------------------------------------------------------------------
# Complete base backups, oldest first (their names are UTC start times).
list_bases() {
  [[ -d $BASE ]] || return 0
  find "$BASE" -mindepth 1 -maxdepth 1 -type d -name '2*' -printf '%f\n' | sort |
    while read -r b; do [[ -f $BASE/$b/$INFO ]] && echo "$b"; done
}
base_info() { sed -n "s/^$2=//p" "$BASE/$1/$INFO"; } # BASE KEY

cmd_setup() {
  local level senders slots super
  level=$(sql "SHOW wal_level") || die "cannot connect with DUKASYNC_PITR_CONN ($CONN)"
  [[ $level == replica || $level == logical ]] ||
    die "wal_level is $level; set wal_level = replica (deploy/postgresql/dukasync-4gb.conf) and restart PostgreSQL"
  senders=$(sql "SHOW max_wal_senders")
  # The receiver, and pg_basebackup's two connections (files and WAL).
  ((senders >= 3)) || die "max_wal_senders is $senders; need at least 3 (receiver + a base backup's two)"
  slots=$(sql "SHOW max_replication_slots")
  # dukasync_wal, and the temporary slot pg_basebackup -X stream makes for its WAL.
  ((slots >= 2)) || die "max_replication_slots is $slots; need at least 2 (dukasync_wal + a base backup's temporary slot)"
  super=$(sql "SELECT rolsuper OR rolreplication FROM pg_roles WHERE rolname = current_user")
  [[ $super == t ]] || die "the role of DUKASYNC_PITR_CONN has no REPLICATION attribute (ALTER ROLE ... REPLICATION)"
  if [[ -z $(sql "SELECT 1 FROM pg_replication_slots WHERE slot_name = '$SLOT'") ]]; then
    # true: reserve WAL from now, before the receiver first connects.
    sql "SELECT pg_create_physical_replication_slot('$SLOT', true)" >/dev/null || die "could not create the slot $SLOT"
    say "created the physical replication slot $SLOT"
  else
    say "the slot $SLOT exists"
  fi
  say "wal_level=$level max_wal_senders=$senders max_replication_slots=$slots max_slot_wal_keep_size=$(sql "SHOW max_slot_wal_keep_size") synchronous_standby_names='$(sql "SHOW synchronous_standby_names")'"
}

cmd_receive() {
  refuse_root
  lock_or_die 8 receive "another receiver is running on $DIR (or after-restore is)"
  mkdir -p "$WAL"
  chmod 700 "$DIR"
  # --synchronous: fsync each write and report the flush position at once (what the server reads from
  # pg_stat_replication to tell phones what is safe). --no-loop: a lost connection ends the process, and
  # systemd (Restart=always) starts it again, visible in the journal. The lock (fd 8) stays held by
  # pg_receivewal itself through exec.
  exec "$(pg_prog pg_receivewal)" -D "$WAL" --slot="$SLOT" --synchronous --status-interval=1 --no-loop --verbose \
    -d "$(conn_with application_name "$SLOT")"
}

cmd_base() {
  refuse_root
  [[ $KEEP =~ ^[1-9][0-9]*$ ]] || die "DUKASYNC_PITR_KEEP_BASES must be a positive number, got '$KEEP'"
  lock_or_die 7 base "another base backup into $DIR is running"
  mkdir -p "$BASE" "$WAL"
  chmod 700 "$DIR"
  local t0 name tmp start_wal
  t0=$(now_ns)
  name=$(date -u +%Y%m%dT%H%M%SZ)
  tmp=$BASE/.partial-$name
  rm -rf "${BASE:?}"/.partial-*
  trap 'rm -rf "$tmp"' EXIT
  # Plain format: pg_verifybackup of PostgreSQL 15 checks only plain backups, and a restore is a copy.
  # -X stream: the WAL the backup needs is inside it, so it restores even without the archive.
  "$(pg_prog pg_basebackup)" -D "$tmp" -F plain -X stream --checkpoint=fast \
    -d "$(conn_with application_name dukasync_basebackup)" || die "pg_basebackup failed; nothing was kept"
  "$(pg_prog pg_verifybackup)" -q "$tmp" || die "pg_verifybackup failed on the new base backup; nothing was kept"
  start_wal=$(sed -n 's/^START WAL LOCATION: .*(file \([0-9A-F]\{24\}\)).*/\1/p' "$tmp/backup_label")
  [[ -n $start_wal ]] || die "no START WAL LOCATION in $tmp/backup_label"
  printf 'start_wal=%s\nend_ns=%s\n' "$start_wal" "$(now_ns)" >"$tmp/$INFO"
  sync -f "$tmp/$INFO"
  mv "$tmp" "$BASE/$name"
  trap - EXIT
  sync -f "$BASE"
  say "base backup $BASE/$name ($(du -sh "$BASE/$name" | cut -f1)), verified, in $(elapsed "$t0")"

  # Retention: the newest KEEP bases, and the WAL the oldest of them needs.
  local -a bases
  mapfile -t bases < <(list_bases)
  local n=${#bases[@]} i
  for ((i = 0; i < n - KEEP; i++)); do rm -rf -- "${BASE:?}/${bases[i]}"; say "removed old base ${bases[i]}"; done
  local oldest=${bases[n > KEEP ? n - KEEP : 0]}
  "$(pg_prog pg_archivecleanup)" "$WAL" "$(base_info "$oldest" start_wal)" ||
    die "pg_archivecleanup failed"
  # Generations from before a restore (after-restore moves them aside) go once this one has KEEP bases.
  if ((n >= KEEP)); then
    local old
    for old in "$DIR"/before-*; do [[ -d $old ]] && rm -rf -- "$old" && say "removed ${old##*/}"; done
  fi
  echo "$BASE/$name"
}

# --- restore ------------------------------------------------------------------------------------------
restore_into() { # TARGET TIME(or empty): the work of `restore` (verify reuses it)
  local target=$1 time=$2 t0 target_ns='' b chosen=''
  t0=$(now_ns)
  [[ $target == /* ]] || target=$PWD/$target
  if [[ -e $target ]]; then
    [[ -d $target ]] || die "$target exists and is not a directory"
    [[ -z $(find "$target" -mindepth 1 -maxdepth 1 -print -quit) ]] ||
      die "$target is not empty; restore only into an empty or absent directory (move the old one aside)"
  fi
  [[ $target != *\'* && $WAL != *\'* && $WAL != *\"* ]] || die "paths with quotes are not supported"
  if [[ -n $time ]]; then
    target_ns=$(date -u -d "$time" +%s%N 2>/dev/null) || die "cannot read the time '$time' (use 'YYYY-MM-DD HH:MM:SS+00')"
    # PostgreSQL refuses to start when the WAL ends before the target ("recovery ended before configured
    # recovery target was reached").
    ((target_ns < $(now_ns))) || die "$time is in the future; leave out --time to restore to the latest commit"
  fi
  local -a bases
  mapfile -t bases < <(list_bases)
  ((${#bases[@]})) || die "no base backup in $BASE"
  for ((i = ${#bases[@]} - 1; i >= 0; i--)); do
    b=${bases[i]}
    if [[ -z $target_ns ]] || (($(base_info "$b" end_ns) <= target_ns)); then chosen=$b; break; fi
  done
  [[ -n $chosen ]] || die "no base backup ended before $time (the oldest, ${bases[0]}, ended at $(date -u -d "@$(($(base_info "${bases[0]}" end_ns) / 1000000000))" '+%F %T+00'))"
  say "restoring base $chosen${time:+ up to $time} into $target"

  mkdir -p "$target"
  chmod 700 "$target"
  cp -a "$BASE/$chosen/." "$target/"
  rm -f "$target/backup_manifest" "$target/$INFO"
  # Recovery never reads the receiver's .partial (the segment it is writing): put it into pg_wal under its
  # final name, where recovery looks after restore_command found nothing. If the base's own pg_wal has that
  # segment too, keep the longer copy: both are zero-padded prefixes of the same WAL, so the one with more
  # non-zero bytes is the longer.
  local p f nz_archive nz_base
  for p in "$WAL"/*.partial; do
    [[ -f $p ]] || continue
    f=${p##*/}
    f=${f%.partial}
    [[ -f $WAL/$f ]] && continue
    # The receiver may finish the segment (rename it) meanwhile: then restore_command finds it complete.
    if [[ -f $target/pg_wal/$f ]]; then
      nz_archive=$(tr -d '\0' <"$p" 2>/dev/null | wc -c)
      nz_base=$(tr -d '\0' <"$target/pg_wal/$f" | wc -c)
      ((nz_archive > nz_base)) || continue
    fi
    cp "$p" "$target/pg_wal/$f" 2>/dev/null || [[ -f $WAL/$f ]] || die "could not copy $p into $target/pg_wal"
  done
  # Recovery settings of an earlier restore may be in the backed-up postgresql.auto.conf: drop them first.
  local auto=$target/postgresql.auto.conf
  touch "$auto"
  grep -Ev "^[[:space:]]*($RECOVERY_KEYS)[[:space:]]*=" "$auto" >"$auto.new" || true
  {
    echo "# Written by deploy/pitr.sh restore; removed by deploy/pitr.sh after-restore."
    echo "restore_command = 'cp \"$WAL/%f\" \"%p\"'"
    echo "recovery_target_timeline = 'latest'"
    if [[ -n $time ]]; then
      echo "recovery_target_time = '$time'"
      echo "recovery_target_action = 'promote'"
    fi
  } >>"$auto.new"
  mv "$auto.new" "$auto"
  touch "$target/recovery.signal"
  sync -f "$target"
  RESTORE_TIME=$(elapsed "$t0")
  RESTORED_BASE=$chosen
}

cmd_restore() {
  refuse_root
  local target='' time=''
  while (($#)); do
    case $1 in
      --time) (($# >= 2)) || die "--time needs a value"; time=$2; shift 2 ;;
      --time=*) time=${1#--time=}; shift ;;
      -*) die "unknown option $1" ;;
      *) [[ -z $target ]] || die "one DATA_DIR only"; target=$1; shift ;;
    esac
  done
  [[ -n $target ]] || die "usage: $0 restore DATA_DIR [--time 'YYYY-MM-DD HH:MM:SS+00']"
  [[ ! -e $DIR/.receive.lock ]] || flock -n "$DIR/.receive.lock" true ||
    say "warning: a receiver is running on $DIR; the restore takes the WAL it has now"
  restore_into "$target" "$time"
  say "restored in $RESTORE_TIME (base $RESTORED_BASE). Next (deploy/RUNBOOK.md, \"Lost disk\"):"
  say "  1. start PostgreSQL on $target (systemctl start postgresql): it replays the WAL and promotes itself"
  say "  2. $0 after-restore $target"
  say "  3. $0 base (systemctl start dukasync-basebackup), then systemctl start dukasync-walreceive"
  say "  4. start the dukasync servers"
}

# Waits until the primary answers and is out of recovery (at most $1 seconds).
wait_promoted() {
  local deadline=$((SECONDS + $1)) r
  while :; do
    r=$(sql "SELECT pg_is_in_recovery()" 2>/dev/null) || r=''
    [[ $r == f ]] && return 0
    ((SECONDS < deadline)) || die "PostgreSQL is not out of recovery after $1 s (answer: '${r:-no connection}'); see its log"
    sleep 0.2
  done
}

cmd_after_restore() {
  refuse_root
  (($# == 1)) || die "usage: $0 after-restore DATA_DIR"
  local data=$1
  [[ -f $data/PG_VERSION ]] || die "$data is not a data directory"
  lock_or_die 8 receive "the WAL receiver is running: stop it first (systemctl stop dukasync-walreceive)"
  wait_promoted "${DUKASYNC_PITR_PROMOTE_TIMEOUT:-3600}"
  [[ ! -f $data/recovery.signal ]] || die "$data/recovery.signal is still there: is PostgreSQL running on $data?"
  # The recovery settings are ignored without recovery.signal, but would be copied into the next base
  # backups: remove them (only this process edits the file now; ALTER SYSTEM would need a superuser).
  local auto=$data/postgresql.auto.conf
  grep -Ev "^[[:space:]]*($RECOVERY_KEYS)[[:space:]]*=|^# Written by deploy/pitr.sh restore" "$auto" >"$auto.new" || true
  mv "$auto.new" "$auto"
  new_generation
}

# The promoted server runs on a new timeline, and slots are never in base backups. The old archive (its bases and
# WAL) belongs to the old history: the receiver would resume from its newest file, on the old timeline, at a
# position a restore to a time has left behind. So a new generation starts: the old one moves to before-<time>/
# (kept until this one has DUKASYNC_PITR_KEEP_BASES bases) and the slot is created anew. Then (the runbook) a
# new base backup, and only then the receiver, on an empty wal/: pg_receivewal 15 starts at the slot's position,
# from before that base, and never reports WAL as archived that no base can replay. The same holds when the slot was lost (max_slot_wal_keep_size): the archive has a gap from there on.
new_generation() {
  local gen
  gen=$DIR/before-$(date -u +%Y%m%dT%H%M%SZ)
  mkdir -p "$gen"
  [[ -d $WAL ]] && mv "$WAL" "$gen/wal"
  [[ -d $BASE ]] && mv "$BASE" "$gen/base"
  mkdir -p "$WAL" "$BASE"
  say "moved the archive of the old history to $gen"
  if [[ -n $(sql "SELECT 1 FROM pg_replication_slots WHERE slot_name = '$SLOT'") ]]; then
    sql "SELECT pg_drop_replication_slot('$SLOT')" >/dev/null
  fi
  sql "SELECT pg_create_physical_replication_slot('$SLOT', true)" >/dev/null || die "could not create the slot $SLOT"
  say "created the slot $SLOT on timeline $(sql "SELECT timeline_id FROM pg_control_checkpoint()")."
  say "next: $0 base (systemctl start dukasync-basebackup), then systemctl start dukasync-walreceive, then the dukasync servers"
}

# After the slot was lost (status says LOST): the same new generation, on a running primary.
cmd_restart_archive() {
  refuse_root
  lock_or_die 8 receive "the WAL receiver is running: stop it first (systemctl stop dukasync-walreceive)"
  [[ $(sql "SELECT pg_is_in_recovery()") == f ]] || die "PostgreSQL is in recovery; wait for it (or use after-restore)"
  new_generation
}

# --- verify -------------------------------------------------------------------------------------------
cmd_verify() {
  refuse_root
  local t0 newest start_seg f s max=-1 tmp pgdata sock
  t0=$(now_ns)
  lock_or_die 6 verify "another verify on $DIR is running"
  rm -rf "$DIR"/.verify-* # left by a verify that was killed
  newest=$(list_bases | tail -1)
  [[ -n $newest ]] || die "no base backup in $BASE"
  "$(pg_prog pg_verifybackup)" -q -i "$INFO" "$BASE/$newest" || die "pg_verifybackup failed on $BASE/$newest"
  read_seg_size "$BASE/$newest"
  start_seg=$(seg_of_name "$(base_info "$newest" start_wal)")
  # Every segment from the base's first to the newest must be in the archive: recovery stops, silently,
  # at the first one missing.
  declare -A have=()
  for f in "$WAL"/*; do
    f=${f##*/}
    is_wal_name "$f" || continue
    s=$(seg_of_name "$f")
    have[$s]=1
    ((s > max)) && max=$s
  done
  ((max >= start_seg)) || die "the archive has no WAL from the base's start ($(base_info "$newest" start_wal)) on"
  for ((s = start_seg; s <= max; s++)); do
    [[ -n ${have[$s]:-} ]] || die "WAL segment $s ($(lsn_of_seg "$s")) is missing from $WAL: the archive has a gap"
  done

  tmp=$(mktemp -d "$DIR/.verify-XXXXXX")
  pgdata=$tmp/data sock=$tmp
  started=''
  # shellcheck disable=SC2064  # expand now: the paths are fixed
  trap "[[ -n \${started:-} ]] && '$(pg_prog pg_ctl)' -D '$pgdata' -m immediate -w stop >/dev/null 2>&1; rm -rf '$tmp'" EXIT
  restore_into "$pgdata" ''
  # Debian keeps postgresql.conf and pg_hba.conf in /etc: the trial needs its own.
  [[ -f $pgdata/postgresql.conf ]] || : >"$pgdata/postgresql.conf"
  printf 'local all all trust\n' >"$tmp/hba.conf"
  # Socket only (no TCP port to collide with), small memory, no archiving, no hot standby (so settings
  # lower than the primary's cannot pause recovery): it only has to replay and answer a few queries.
  started=1
  "$(pg_prog pg_ctl)" -D "$pgdata" -l "$tmp/log" -w -t 600 -o "-c listen_addresses='' -c port=5432 \
-c unix_socket_directories='$sock' -c hba_file='$tmp/hba.conf' -c archive_mode=off -c hot_standby=off \
-c shared_buffers=32MB -c max_wal_size=1GB -c logging_collector=off -c log_destination=stderr" start >/dev/null ||
    { tail -n 20 "$tmp/log" >&2; die "the trial restore did not start"; }
  local user='' u deadline=$((SECONDS + 600)) r
  while :; do
    for u in postgres "$(id -un)"; do
      r=$("$(pg_prog psql)" -X -A -t -q -h "$sock" -U "$u" -d postgres -c "SELECT pg_is_in_recovery()" 2>/dev/null) &&
        { user=$u; break; }
    done
    [[ $r == f ]] && break
    ((SECONDS < deadline)) || { tail -n 20 "$tmp/log" >&2; die "the trial restore did not finish recovery"; }
    sleep 0.2
  done
  q() { "$(pg_prog psql)" -X -A -t -q -v ON_ERROR_STOP=1 -h "$sock" -U "$user" -d "$1" -c "$2"; }
  local replay_lsn replay_ts need sanity=''
  replay_lsn=$(q postgres "SELECT pg_last_wal_replay_lsn()")
  replay_ts=$(q postgres "SELECT coalesce(pg_last_xact_replay_timestamp()::text, 'none since the base')")
  need=$(lsn_of_seg "$max")
  [[ $(q postgres "SELECT '$replay_lsn'::pg_lsn >= '$need'::pg_lsn") == t ]] ||
    { grep -E 'redo done|invalid|could not' "$tmp/log" >&2 || true
      die "the trial restore stopped at $replay_lsn, before the newest archived segment ($need): the WAL is damaged"; }
  if [[ $(q postgres "SELECT 1 FROM pg_database WHERE datname = 'dukasync'") == 1 ]] &&
    [[ $(q dukasync "SELECT to_regclass('public.changes') IS NOT NULL") == t ]]; then
    sanity=$(q dukasync "SELECT count(*) || ' changes, newest version ' || coalesce(max(version), 0) FROM changes") ||
      die "the restored database dukasync does not answer a query on changes"
  fi
  "$(pg_prog pg_ctl)" -D "$pgdata" -m fast -w stop >/dev/null
  started=''
  echo "verified: base $newest, WAL through segment $max, replayed to $replay_lsn, last transaction at $replay_ts${sanity:+, dukasync: $sanity} ($(elapsed "$t0"))"
}

# --- status -------------------------------------------------------------------------------------------
cmd_status() {
  local rc=0 rep slot
  rep=$(sql "SELECT state, sent_lsn, flush_lsn, pg_current_wal_lsn(), pg_wal_lsn_diff(pg_current_wal_lsn(), flush_lsn), coalesce(flush_lag::text, '-'), reply_time FROM pg_stat_replication WHERE application_name = '$SLOT'") ||
    die "cannot connect with DUKASYNC_PITR_CONN ($CONN)"
  if [[ -n $rep ]]; then
    IFS='|' read -r state sent flush cur behind lag reply <<<"$rep"
    echo "receiver: $state, sent $sent, flushed $flush, primary at $cur: $behind bytes not yet flushed (flush lag $lag, last reply $reply)"
    [[ $state == streaming ]] || rc=3
  else
    echo "receiver: not connected"; rc=3
  fi
  slot=$(sql "SELECT active, restart_lsn, coalesce(wal_status, '-'), pg_size_pretty(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)), coalesce(pg_size_pretty(safe_wal_size), 'unlimited') FROM pg_replication_slots WHERE slot_name = '$SLOT'")
  if [[ -n $slot ]]; then
    IFS='|' read -r active restart wstatus retained safe <<<"$slot"
    echo "slot $SLOT: active $active, restart_lsn $restart, WAL retained for it $retained, wal_status $wstatus, room before it is invalidated $safe"
    [[ $wstatus == lost ]] && { echo "slot $SLOT is LOST: the archive has a gap; stop the receiver, run $0 restart-archive, then $0 base, then start the receiver"; rc=3; }
  else
    echo "slot $SLOT: missing (run $0 setup)"; rc=3
  fi
  local b
  while read -r b; do
    echo "base $b: $(du -sh "$BASE/$b" | cut -f1), ended $(date -u -d "@$(($(base_info "$b" end_ns) / 1000000000))" '+%F %T+00')"
  done < <(list_bases)
  [[ -d $WAL ]] && echo "wal: $(find "$WAL" -maxdepth 1 -name '0*' | wc -l) files, $(du -sh "$WAL" | cut -f1)"
  return "$rc"
}

case ${1:-} in
  setup) cmd_setup ;;
  receive) cmd_receive ;;
  base) cmd_base ;;
  restore) shift; cmd_restore "$@" ;;
  after-restore) shift; cmd_after_restore "$@" ;;
  restart-archive) cmd_restart_archive ;;
  verify) cmd_verify ;;
  status) cmd_status ;;
  *) echo "usage: $0 setup|receive|base|restore DATA_DIR [--time T]|after-restore DATA_DIR|restart-archive|verify|status" >&2; exit 2 ;;
esac
