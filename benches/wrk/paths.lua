-- GETs a random path from a file, one path a line; prints the result as one JSON line.
-- wrk ... -s benches/wrk/paths.lua URL -- PATHS_FILE TOKEN [IF_NONE_MATCH] [ACCEPT_ENCODING]
local paths = {}

function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then paths[#paths + 1] = line end
  end
  if args[2] and #args[2] > 0 then wrk.headers["Authorization"] = "Bearer " .. args[2] end
  if args[3] and #args[3] > 0 then wrk.headers["If-None-Match"] = args[3] end
  if args[4] and #args[4] > 0 then wrk.headers["Accept-Encoding"] = args[4] end
end

function request()
  return wrk.format("GET", paths[math.random(#paths)])
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"bytes":%d,"connect_errors":%d,"read_errors":%d,"write_errors":%d,' ..
    '"status_errors":%d,"timeouts":%d,"p50_us":%d,"p95_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max))
end
