#!/usr/bin/env bash
# A simple load for measuring an installed VPS (deploy/MEMORY.md's budget itself comes from benches/run, which
# starts this profile's stack and samples it). For SECONDS seconds, at once, with wrk (apt install wrk):
#   - LONGPOLLS connections long-polling `laundry` (nothing is written there, so each waits its full wait);
#   - 16 connections pulling the whole `retail` scope from 0, as fast as they can;
#   - 4 connections pushing one `put` each to `water`, each from a new client id (so replay state grows).
# It samples memory with deploy/memory-report.sh every 5 s and prints the largest PSS per service.
#
#   deploy/memory-load.sh BASE_URL TOKEN SECONDS LONGPOLLS dukasync=PID postgres=PID redis-cache=PID
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
(($# >= 5)) || { echo "usage: $0 BASE_URL TOKEN SECONDS LONGPOLLS name=PID..." >&2; exit 2; }
base=$1 token=$2 secs=$3 polls=$4
shift 4
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

head=$(curl -fsS -H "Authorization: Bearer $token" "$base/v1/scopes/laundry/changes?since=0&limit=1" |
  sed -n 's/.*"head":\([0-9]*\).*/\1/p')
cat >"$work/push.lua" <<LUA
math.randomseed(os.time())
local function uuid()
  return (string.gsub('xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx', '[xy]', function(c)
    return string.format('%x', c == 'x' and math.random(0, 15) or math.random(8, 11))
  end))
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $token"
local n = 0
request = function()
  n = n + 1
  local key = "load-" .. math.random(1, 500)
  local body = '{"client_id":"' .. uuid() .. '","ops":[{"seq":1,"id":"' .. uuid() ..
    '","type":"put","collection":"customers","key":"' .. key .. '","data":{"id":"' .. key ..
    '","name":"Load ' .. n .. '","credit_limit":"100.00"}}]}'
  return wrk.format(nil, nil, nil, body)
end
LUA

auth="Authorization: Bearer $token"
wrk -t1 -c"$polls" -d"${secs}s" --timeout 40s -H "$auth" "$base/v1/scopes/laundry/changes?since=$head&wait=30" >"$work/polls" &
wrk -t1 -c16 -d"${secs}s" -H "$auth" "$base/v1/scopes/retail/changes?since=0" >"$work/pulls" &
wrk -t1 -c4 -d"${secs}s" -s "$work/push.lua" "$base/v1/scopes/water/ops" >"$work/pushes" &

: >"$work/samples"
end=$((SECONDS + secs))
while ((SECONDS < end)); do
  sleep 5
  "$HERE/memory-report.sh" "$@" | tail -n +2 >>"$work/samples"
done
wait
for f in polls pulls pushes; do
  echo "== $f"; grep -E 'Requests/sec|Latency|requests in|Non-2xx|Socket errors' "$work/$f" || true
done
echo "== largest sample per service (MiB)"
awk '$1 != "total" {if ($4 > p[$1]) {p[$1] = $4; r[$1] = $3}} END {for (s in p) printf "%-14s rss %7.1f  pss %7.1f\n", s, r[s], p[s]}' "$work/samples" | sort
