#!/usr/bin/env bash
# Lints both servers' /metrics with `promtool check metrics` (the judge of
# Prometheus names, SPEC.md). Starts data_server and metrics_server from
# BIN_DIR (default ${CARGO_TARGET_DIR:-target}/debug) on 127.0.0.1, port 0,
# waits for a snapshot and some traffic (faults included, so the error
# counters have samples), then feeds each /metrics page to promtool.
# Exits 1 if promtool reports anything or the content type is wrong.
# Installs Debian's `prometheus` package when promtool is missing.
#
#   scripts/promtool_check.sh [BIN_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
bin_dir=${1:-${CARGO_TARGET_DIR:-target}/debug}
want_ct='text/plain; version=0.0.4; charset=utf-8'

say() { echo "promtool_check: $*" >&2; }

# shellcheck source=scripts/servers.sh
. scripts/servers.sh
need_prometheus


start data_server --switches 64 --interval-sec 1 --fault-500-pct 20 --fault-slow-ms 5
ds=$addr
start metrics_server --upstream-url "http://$ds/counters" --poll-ms 200
ms=$addr

status() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://$1$2" || true; }
ok=
for _ in $(seq 150); do   # 15 s
  if [ "$(status "$ms" /telemetry/ListMetrics)" = 200 ]; then ok=1; break; fi
  sleep 0.1
done
[ -n "$ok" ] || { say "metrics_server got no snapshot in 15 s"; tail -5 "$tmp/metrics_server.log" >&2; exit 1; }
# Traffic on every endpoint, a few errors among it, and a poll or two more.
for path in /telemetry/ListMetrics '/telemetry/GetMetric?switch_id=sw-000&metric=cpu_util_pct' \
  '/telemetry/GetMetric?switch_id=nope&metric=cpu_util_pct' /telemetry/GetMetric /stats /health /ready /nope; do
  status "$ms" "$path" >/dev/null
done
status "$ds" /counters >/dev/null
status "$ds" /nope >/dev/null
sleep 1

failed=0
while read -r name at; do
  if ! curl -sf --max-time 5 -D "$tmp/$name.head" -o "$tmp/$name.prom" "http://$at/metrics"; then
    say "$name: GET /metrics failed"; failed=1; continue
  fi
  ct=$(tr -d '\r' <"$tmp/$name.head" | sed -n 's/^[Cc]ontent-[Tt]ype: *//p' | tail -1)
  if [ "$ct" != "$want_ct" ]; then
    say "$name: Content-Type is '$ct', want '$want_ct'"; failed=1
  fi
  families=$(grep -c '^# TYPE ' "$tmp/$name.prom" || true)
  samples=$(grep -vc '^#' "$tmp/$name.prom" || true)
  rc=0
  out=$(promtool check metrics <"$tmp/$name.prom" 2>&1) || rc=$?
  if [ "$rc" -ne 0 ] || [ -n "$out" ]; then
    say "$name: promtool check metrics (exit $rc) over $families families, $samples samples:"
    printf '%s\n' "$out" | sed 's/^/  /' >&2
    failed=1
  else
    say "$name: promtool check metrics clean ($families families, $samples samples)"
  fi
done <<EOF
metrics_server $ms
data_server $ds
EOF
exit "$failed"
