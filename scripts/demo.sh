#!/usr/bin/env bash
# A curl/jq tour of a running metrics_server (start one with `make run`).
# METRICS_URL picks another one; the default is the local `make run` one.
set -euo pipefail
base=${METRICS_URL:-http://127.0.0.1:${METRICS_PORT:-8080}}

for _ in $(seq 50); do
  curl -sf "$base/telemetry/ListMetrics" >/dev/null && break
  sleep 0.2
done

show() { printf '\n$ %s\n' "$*"; eval "$*"; }
show "curl -s $base/health"
show "curl -s $base/telemetry/ListMetrics | jq -c '.fields, .items[0]'"
show "curl -s '$base/telemetry/GetMetric?switch_id=sw-000&metric=cpu_util_pct' | jq ."
show "curl -s '$base/telemetry/ListMetrics?sort=-temperature_c&limit=3&fields=temperature_c&format=csv'"
show "curl -s '$base/telemetry/GetMetric?switch_id=sw-999&metric=cpu_util_pct' | jq -r .error"
show "curl -s $base/stats | jq '{endpoints, poll_last_cycle_ms, poll_retry_count, uptime_s}'"
