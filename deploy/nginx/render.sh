#!/usr/bin/env bash
# Writes the nginx site for dukasync to stdout, from deploy/nginx/dukasync.conf.in and these settings:
#
#   NGINX_SERVER_NAME    (required) the public host name, e.g. sync.example.co.ke
#   NGINX_TLS_CERT       certificate chain (default /etc/letsencrypt/live/$NGINX_SERVER_NAME/fullchain.pem)
#   NGINX_TLS_KEY        its key          (default /etc/letsencrypt/live/$NGINX_SERVER_NAME/privkey.pem)
#   NGINX_HTTPS_LISTEN   listen addresses for HTTPS (default "443 [::]:443")
#   NGINX_HTTP_LISTEN    listen addresses for the redirect to HTTPS (default "80 [::]:80")
#   NGINX_ADMIN_ALLOW    addresses or CIDRs allowed to reach /metrics and /readyz
#                        (default "127.0.0.1 ::1": the machine itself)
#   NGINX_ADMIN_API_ALLOW  opt-in: addresses or CIDRs allowed to reach /v1/admin/ (the conflicts admin API);
#                        default empty: reachable from anywhere, the server's roles decide (owners and managers
#                        review conflicts from their phones)
#   NGINX_LOG_DIR        where dukasync.access.log goes (default /var/log/nginx)
#   DUKASYNC_UPSTREAMS   the dukasync instances, host:port (default "127.0.0.1:8080")
#
# The limits come from the servers' own settings, so the two can never disagree: DUKASYNC_MAX_WAIT_SECS,
# DUKASYNC_REQUEST_TIMEOUT_SECS and DUKASYNC_MAX_BODY_BYTES, from the environment or else from the env file
# $DUKASYNC_ENV_FILE (default /etc/dukasync/dukasync.env), else the server's defaults (30, 30, 1048576).
#
#   NGINX_SERVER_NAME=sync.example.co.ke deploy/nginx/render.sh > /etc/nginx/sites-available/dukasync
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
die() { echo "render.sh: error: $*" >&2; exit 1; }

# A server setting: the environment wins, then the env file (read, never executed), then the default.
setting() {
  local name=$1 default=$2 file=${DUKASYNC_ENV_FILE:-/etc/dukasync/dukasync.env} k v value=
  if [[ -n ${!name:-} ]]; then value=${!name}
  elif [[ -r $file ]]; then
    while IFS='=' read -r k v; do [[ $k == "$name" ]] && value=$v; done <"$file"
  fi
  value=${value:-$default}
  [[ $value =~ ^[0-9]+$ ]] || die "$name must be a whole number, got '$value'"
  echo "$value"
}

lines() {  # lines() PREFIX SUFFIX WORD... → one indented "PREFIX WORD SUFFIX;" line per word
  local prefix=$1 suffix=$2 out='' w
  shift 2
  for w in "$@"; do out+="    $prefix $w$suffix;"$'\n'; done
  printf '%s' "${out%$'\n'}"
}

name=${NGINX_SERVER_NAME:-}
[[ $name =~ ^[A-Za-z0-9.-]+$ ]] || die "set NGINX_SERVER_NAME to the public host name"
cert=${NGINX_TLS_CERT:-/etc/letsencrypt/live/$name/fullchain.pem}
key=${NGINX_TLS_KEY:-/etc/letsencrypt/live/$name/privkey.pem}
log_dir=${NGINX_LOG_DIR:-/var/log/nginx}
read -r -a https_listen <<<"${NGINX_HTTPS_LISTEN:-443 [::]:443}"
read -r -a http_listen <<<"${NGINX_HTTP_LISTEN:-80 [::]:80}"
read -r -a allow <<<"${NGINX_ADMIN_ALLOW:-127.0.0.1 ::1}"
read -r -a api_allow <<<"${NGINX_ADMIN_API_ALLOW:-}"
read -r -a upstreams <<<"${DUKASYNC_UPSTREAMS:-127.0.0.1:8080}"
((${#https_listen[@]} && ${#http_listen[@]} && ${#upstreams[@]})) || die "listen addresses and upstreams must not be empty"
for a in "${allow[@]}"; do [[ $a =~ ^[0-9A-Fa-f:./]+$ ]] || die "NGINX_ADMIN_ALLOW: '$a' is not an address or CIDR"; done
for a in "${api_allow[@]}"; do [[ $a =~ ^[0-9A-Fa-f:./]+$ ]] || die "NGINX_ADMIN_API_ALLOW: '$a' is not an address or CIDR"; done
host_port='^[][A-Za-z0-9.:-]+:[0-9]+$'
for u in "${upstreams[@]}"; do [[ $u =~ $host_port ]] || die "DUKASYNC_UPSTREAMS: '$u' is not host:port"; done
for p in "$cert" "$key" "$log_dir"; do [[ $p =~ ^/[^\;\ \'\"]*$ ]] || die "'$p' must be an absolute path without spaces or quotes"; done

max_wait=$(setting DUKASYNC_MAX_WAIT_SECS 30)
request_timeout=$(setting DUKASYNC_REQUEST_TIMEOUT_SECS 30)
max_body=$(setting DUKASYNC_MAX_BODY_BYTES 1048576)

site=$(<"$HERE/dukasync.conf.in")
site=${site//@UPSTREAMS@/$(lines server ' max_fails=3 fail_timeout=10s' "${upstreams[@]}")}
site=${site//@HTTPS_LISTEN@/$(lines listen ' ssl http2' "${https_listen[@]}")}
site=${site//@HTTP_LISTEN@/$(lines listen '' "${http_listen[@]}")}
site=${site//@ADMIN_ALLOW@/$(lines '    allow' '' "${allow[@]}")}
if ((${#api_allow[@]})); then
  site=${site//@ADMIN_API_ALLOW@/$(lines '    allow' '' "${api_allow[@]}")$'\n        deny all;'}
else
  site=${site//@ADMIN_API_ALLOW@/        # open: NGINX_ADMIN_API_ALLOW is not set}
fi
site=${site//@SERVER_NAME@/$name}
site=${site//@TLS_CERT@/$cert}
site=${site//@TLS_KEY@/$key}
site=${site//@LOG_DIR@/$log_dir}
site=${site//@MAX_BODY_BYTES@/$max_body}
site=${site//@PROXY_READ_TIMEOUT@/$((max_wait + request_timeout + 5))}
if grep -q "@[A-Z_]\+@" <<<"$site"; then die "a placeholder was left unfilled"; fi
printf '%s\n' "$site"
