# shellcheck shell=bash
# shellcheck disable=SC2034  # CONN_URL is used by the scripts that source this
# Helpers shared by deploy/backup.sh and deploy/restore.sh (sourced, not run).

say() { echo "${0##*/}: $*" >&2; }
die() { say "error: $*"; exit 1; }

# DUKASYNC_DATABASE_URL from the environment, else from the systemd env file (read as KEY=VALUE lines, never
# executed: a password may hold shell characters).
load_database_url() {
  [[ -n ${DUKASYNC_DATABASE_URL:-} ]] && return 0
  local file=${DUKASYNC_ENV_FILE:-/etc/dukasync/dukasync.env} k v
  [[ -r $file ]] || die "DUKASYNC_DATABASE_URL is not set and $file is not readable"
  while IFS='=' read -r k v; do
    [[ $k == DUKASYNC_DATABASE_URL ]] && DUKASYNC_DATABASE_URL=$v
  done <"$file"
  [[ -n ${DUKASYNC_DATABASE_URL:-} ]] || die "$file does not set DUKASYNC_DATABASE_URL"
}

# %XX escapes to bytes; a backslash stays a backslash ('+' is literal in a URL's user part).
percent_decode() { local s=${1//\\/\\\\}; printf '%b' "${s//%/\\x}"; }

# Splits a postgres:// URL into CONN_URL (without the password) and an exported PGPASSWORD.
split_database_url() {
  local url=$1 re='^(postgres(ql)?://)([^:@/]*)(:([^@/]*))?@(.*)$'
  [[ $url == postgres://* || $url == postgresql://* ]] || die "not a postgres:// URL"
  if [[ $url =~ $re ]]; then
    CONN_URL=${BASH_REMATCH[1]}${BASH_REMATCH[3]}@${BASH_REMATCH[6]}
    if [[ -n ${BASH_REMATCH[4]} ]]; then
      PGPASSWORD=$(percent_decode "${BASH_REMATCH[5]}")
      export PGPASSWORD
    fi
  else
    CONN_URL=$url
  fi
}

# A PostgreSQL client program: from $DUKASYNC_PG_BIN if it has it, else from PATH.
pg_tool() {
  if [[ -n ${DUKASYNC_PG_BIN:-} && -x $DUKASYNC_PG_BIN/$1 ]]; then echo "$DUKASYNC_PG_BIN/$1"; return 0; fi
  command -v "$1" || die "$1 not found (install postgresql-client, or set DUKASYNC_PG_BIN)"
}
