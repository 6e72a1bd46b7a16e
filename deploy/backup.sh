#!/usr/bin/env bash
# Backs up dukasync's database with pg_dump: one consistent snapshot (pg_dump reads in one repeatable-read
# transaction while the servers keep running), custom format (compressed; pg_restore can read it table by table).
#
#   deploy/backup.sh [DIR]     writes DIR/dukasync-<UTC time>.dump (default DIR: /var/backups/dukasync),
#                              checks it reads back, keeps the newest $DUKASYNC_BACKUP_KEEP (default 14) and
#                              prints the new file's path on stdout.
#
# The database comes from DUKASYNC_DATABASE_URL, or from the env file $DUKASYNC_ENV_FILE
# (default /etc/dukasync/dukasync.env, the systemd unit's). Its password is handed to pg_dump through
# PGPASSWORD, never on a command line that `ps` would show. pg_dump is taken from $DUKASYNC_PG_BIN, else PATH;
# it must be at least the server's major version. Restore with deploy/restore.sh; see deploy/BACKUP.md.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=pg-common.sh
. "$HERE/pg-common.sh"

DIR=${1:-/var/backups/dukasync}
KEEP=${DUKASYNC_BACKUP_KEEP:-14}
[[ $KEEP =~ ^[1-9][0-9]*$ ]] || die "DUKASYNC_BACKUP_KEEP must be a positive number, got '$KEEP'"
load_database_url
split_database_url "$DUKASYNC_DATABASE_URL"
PG_DUMP=$(pg_tool pg_dump)
PG_RESTORE=$(pg_tool pg_restore)

umask 077
mkdir -p "$DIR"
exec 8>"$DIR/.lock"
flock -n 8 || die "another backup into $DIR is running"

file=$DIR/dukasync-$(date -u +%Y%m%dT%H%M%SZ).dump
tmp=$file.partial
trap 'rm -f "$tmp"' EXIT
"$PG_DUMP" --format=custom --compress=6 --no-owner --no-privileges --file="$tmp" --dbname="$CONN_URL" \
  || die "pg_dump failed; nothing was written"
# A dump that does not read back, or lacks the change log's data, is no backup.
# grep reads all of it: with -q it would stop early, pg_restore would die of SIGPIPE, and pipefail would fail us.
"$PG_RESTORE" --list "$tmp" | grep 'TABLE DATA public changes ' >/dev/null \
  || die "the dump does not read back with the change log in it; kept nothing"
sync "$tmp"
mv "$tmp" "$file"
sync "$DIR"
trap - EXIT

# Keep the newest $KEEP (the names sort by time).
mapfile -t old < <(find "$DIR" -maxdepth 1 -name 'dukasync-*.dump' -printf '%f\n' | sort -r | tail -n +"$((KEEP + 1))")
for f in "${old[@]}"; do rm -f -- "${DIR:?}/$f"; done
say "wrote $file ($(du -h "$file" | cut -f1)); kept the newest $KEEP"
echo "$file"
