#!/usr/bin/env bash
# Restores a deploy/backup.sh dump into a fresh, empty database. It never restores over existing data: make the
# target first (`createdb -O dukasync dukasync_restored`), restore, then point the servers at it (or rename the
# databases) and restart them. Every device that pulled past the backup then gets 410 reset_required and
# re-pulls; what was written after the backup is gone (see deploy/BACKUP.md, "What devices experience").
#
#   deploy/restore.sh DUMP TARGET_DATABASE_URL
#
# The password in TARGET_DATABASE_URL goes to pg_restore through PGPASSWORD. Run `dukasync migrate` afterwards
# when the binary is newer than the dump. pg_restore and psql come from $DUKASYNC_PG_BIN, else PATH.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=pg-common.sh
. "$HERE/pg-common.sh"

(($# == 2)) || { echo "usage: $0 DUMP TARGET_DATABASE_URL" >&2; exit 2; }
DUMP=$1
[[ -r $DUMP ]] || die "cannot read $DUMP"
split_database_url "$2"
PG_RESTORE=$(pg_tool pg_restore)
PSQL=$(pg_tool psql)

"$PG_RESTORE" --list "$DUMP" >/dev/null || die "$DUMP is not a pg_dump custom-format archive"
relations=$("$PSQL" -X -A -t -q -v ON_ERROR_STOP=1 --dbname="$CONN_URL" -c \
  "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'") \
  || die "cannot connect to the target database"
[[ $relations == 0 ]] || die "the target database is not empty ($relations relations in schema public); restore only into a fresh database"

# One transaction: a failure leaves the target as empty as it was.
"$PG_RESTORE" --exit-on-error --single-transaction --no-owner --no-privileges --dbname="$CONN_URL" "$DUMP" \
  || die "pg_restore failed; the target is unchanged"
say "restored $DUMP; next: dukasync migrate (if the binary is newer), point DUKASYNC_DATABASE_URL here, restart"
