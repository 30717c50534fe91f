#!/usr/bin/env bash
# Single reports (POST /v1/interactions) under wrk, beside the same server's bare /healthz: the
# release binary in standalone mode (SQLite store, spool and database in a fresh directory), a
# unique seed-format record per request (unique across runs too: a run that repeated an earlier
# run's IDs would measure the store skipping duplicates), 2 wrk threads, at 4 and 64 connections.
# Prints a table, with the CPU time the server and wrk each spent per report: on a 2-core machine
# the two share the cores, so requests/s is bounded by their sum.
#
#   scripts/bench-single-reports.sh [BINARY [BASELINE_BINARY]]
#
# BINARY defaults to target/release/mcp-coordinator. With BASELINE_BINARY (an older build), the two
# alternate, ROUNDS times each (default 2), so both see the same machine. SECONDS_PER_RUN (8) sets
# each wrk run's length. A last line runs the store unreachable (nothing is applied): what the
# requests cost without the store's work sharing the machine.
set -euo pipefail

binary=${1:-target/release/mcp-coordinator}
baseline=${2:-}
rounds=${ROUNDS:-2}
seconds=${SECONDS_PER_RUN:-8}
here=$(cd "$(dirname "$0")/.." && pwd)

command -v wrk >/dev/null || { echo "wrk is needed (Debian package wrk)" >&2; exit 1; }
[ -x "$binary" ] || { echo "no binary at $binary (cargo build --release)" >&2; exit 1; }
[ -z "$baseline" ] || [ -x "$baseline" ] || { echo "no baseline binary at $baseline" >&2; exit 1; }

work=$(mktemp -d /tmp/mcp-bench-single-XXXXXX)
server=""
cleanup() {
  [ -z "$server" ] || kill "$server" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start BINARY NAME [ARGS...]: a standalone server on a fresh data directory; sets port, key, server.
start() {
  local bin=$1 name=$2
  shift 2
  local dir="$work/$name-$RANDOM"
  mkdir -p "$dir/registrations"
  cp "$here/examples/standalone/ocr-fast.yaml" "$dir/registrations/"
  port=$(free_port)
  "$bin" standalone --registrations "$dir/registrations" --data-dir "$dir/data" \
    --listen "127.0.0.1:$port" "$@" >"$dir/log" 2>&1 &
  server=$!
  local key_file="$dir/data/keys/default/ocr-fast-mcp-key"
  for _ in $(seq 100); do
    if [ -s "$key_file" ] && curl -sf "http://127.0.0.1:$port/healthz" >/dev/null; then
      key=$(cat "$key_file")
      sed "s/@KEY@/$key/" >"$dir/report.lua" <<'LUA'
local counter = 0
local thread_index = 0
local run = 0
local template = [[{"interaction_id":"int_20261204_120000_%08x%016x","mcp_id":"ocr_fast_workflow_mcp_001","timestamp":"2026-12-04T12:00:00Z","request_data":{"user_id":"user_%d","request_type":"ocr_processing","input_size":1024000,"parameters":{"quality_level":"high","language":"en","output_format":"json","dpi":300}},"processing_data":{"start_time":"2026-12-04T12:00:00Z","end_time":"2026-12-04T12:00:05.333Z","processing_time":5.333,"adapter_used":"tesseract_v5_adapter","steps_executed":["validation","preprocessing","ocr","postprocessing","formatting"],"resource_usage":{"cpu_usage":45.2,"memory_usage":512.5,"gpu_usage":0.0}},"result_data":{"success":true,"output_size":2048,"quality_score":0.95,"confidence":0.92,"error_code":null,"error_message":null},"metadata":{"mcp_version":"1.2.3","coordinator_version":"0.1.0","environment":"production","region":"eu-west-1"}}]]
setup = function(thread)
  thread:set("tid", thread_index)
  thread_index = thread_index + 1
end
init = function(args)
  run = tonumber(args[1])
end
request = function()
  counter = counter + 1
  local body = string.format(template, run, tid * 1000000000 + counter, counter % 5000)
  return wrk.format("POST", "/v1/interactions", {["Authorization"] = "Bearer @KEY@", ["Content-Type"] = "application/json"}, body)
end
LUA
      script="$dir/report.lua"
      return
    fi
    sleep 0.1
  done
  echo "the $name server did not come up; its log:" >&2
  cat "$dir/log" >&2
  exit 1
}

stop() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  server=""
}

ticks_per_second=$(getconf CLK_TCK)
server_ticks() { awk '{ print $14 + $15 }' "/proc/$server/stat"; }

# load CONNECTIONS [SCRIPT]: one wrk run; prints "requests/s p50 p99 non-2xx server-us wrk-us", the
# last two being CPU time per request (user + system) of the server and of wrk.
load() {
  local connections=$1 lua=${2:-}
  local url="http://127.0.0.1:$port/healthz" out before after wrk_seconds run
  if [ -n "$lua" ]; then url="http://127.0.0.1:$port/v1/interactions"; fi
  # Each run's IDs start from the microsecond clock (load runs in a subshell: no counter survives).
  run=$(( $(date +%s%6N) % 4294967296 ))
  before=$(server_ticks)
  # bash's time keyword reports wrk's own CPU time (user, system) on the last line of stderr.
  out=$( { TIMEFORMAT='%U %S'; time wrk -t2 -c"$connections" -d"${seconds}s" --latency \
    ${lua:+-s "$lua"} "$url" -- "$run" 2>/dev/null; } 2>&1)
  after=$(server_ticks)
  wrk_seconds=$(echo "$out" | tail -1 | awk '{ print $1 + $2 }')
  echo "$out" | awk -v server_ticks=$((after - before)) -v tick_hz="$ticks_per_second" \
    -v wrk_seconds="$wrk_seconds" '
    /requests in/ { requests = $1 }
    /Requests\/sec/ { rate = $2 }
    $1 == "50%" { p50 = $2 }
    $1 == "99%" { p99 = $2 }
    /Non-2xx/ { bad = $5 }
    END {
      if (requests == 0) requests = 1
      printf "%.0f %s %s %d %.1f %.1f\n", rate, p50, p99, bad,
        server_ticks / tick_hz * 1e6 / requests, wrk_seconds * 1e6 / requests
    }'
}

echo "| build | connections | /healthz requests/s | reports/s | p50 ack | p99 ack | server CPU µs per report (/healthz) | wrk CPU µs per report (/healthz) | non-2xx |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
measure() {
  local bin=$1 name=$2
  start "$bin" "$name"
  for connections in 4 64; do
    read -r bare _ _ _ bare_server bare_wrk < <(load "$connections")
    read -r rate p50 p99 bad server_us wrk_us < <(load "$connections" "$script")
    echo "| $name | $connections | $bare | $rate | $p50 | $p99 | $server_us ($bare_server) | $wrk_us ($bare_wrk) | $bad |"
  done
  stop
}
for _ in $(seq "$rounds"); do
  measure "$binary" this
  [ -z "$baseline" ] || measure "$baseline" baseline
done
start "$binary" "store-away" --clickhouse-url http://127.0.0.1:1
for connections in 4 64; do
  read -r rate p50 p99 bad server_us wrk_us < <(load "$connections" "$script")
  echo "| this, store unreachable (nothing applied) | $connections | | $rate | $p50 | $p99 | $server_us | $wrk_us | $bad |"
done
stop
