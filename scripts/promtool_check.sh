#!/usr/bin/env bash
# Lints both servers' /metrics with `promtool check metrics` (the judge of
# Prometheus names, docs/API.md). Starts data_server and metrics_server from
# BIN_DIR (default ${CARGO_TARGET_DIR:-target}/debug) on 127.0.0.1, port 0,
# waits for a snapshot and some traffic (faults included, so the error
# counters have samples), then feeds each /metrics page to promtool. A
# second metrics_server polls a static upstream whose CSV has hostile
# column names (our own family names, promtool's forbidden units, unicode,
# quotes, names that read alike), and its /metrics goes to promtool too.
# A third polls a UFM Telemetry-shaped CSV of 100,000 port rows (UFM's
# header, camel-case counters near 2^64, empty cells, hostile labels):
# keyed families, counters and the fabric_port_info family.
# A data_server and a metrics_server with TLS (a certificate made here by
# openssl) add the certificate-expiry family, fetched over HTTPS.
# First, deploy/prometheus: `promtool check rules` and `promtool test
# rules` on the alerting rules, `promtool check config` on the example
# prometheus.yml (several metrics_servers, README "Scaling out").
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

rules=deploy/prometheus
if ! out=$(promtool check rules "$rules/alerts.yml" 2>&1); then
  say "promtool check rules $rules/alerts.yml:"; printf '%s\n' "$out" | sed 's/^/  /' >&2; exit 1
fi
if ! out=$(cd "$rules" && promtool test rules alerts_test.yml 2>&1); then
  say "promtool test rules $rules/alerts_test.yml:"; printf '%s\n' "$out" | sed 's/^/  /' >&2; exit 1
fi
if ! out=$(promtool check config "$rules/prometheus.yml" 2>&1); then
  say "promtool check config $rules/prometheus.yml:"; printf '%s\n' "$out" | sed 's/^/  /' >&2; exit 1
fi
say "deploy/prometheus: promtool check rules, test rules and check config clean"

# The hostile upstream: a static CSV served by python's http.server.
mkdir "$tmp/upstream"
cat >"$tmp/upstream/counters" <<'CSV'
switch_id,bandwidth_gbps,packet_errors,Packet-Errors,foo-Bar.x,Foo_Bar_X,foo bar x,fabric_upstream_up,upstream_up,poll_duration_us,http_request_duration_seconds_bucket,fabric_http_requests_total,polls_total,build_info,snapshot_age_seconds,producer_switches,column,é,日本,---,5g_links,latency_ms,link_bits,rx_kilobytes,uptime_hours,cpu gauge,errors_counter,rx_total,queue_count,x_bucket,x_sum,ts_created,"q""uote","back\slash",semi;colon,{brace},a:b,_us,ms,m_s,x_us,X-US,le,quantile
sw-000,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42,43
"sw ""q"" \ 1",1.5,0,0,-1,1e3,0.25,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0
CSV
# UFM's CSV: one row per port, 2,500 switches x 40 ports.
python3 - "$tmp/upstream/ufm" <<'PY'
import sys, time
ts = int(time.time() * 1e6)  # microseconds, as UFM writes them: the data's time
cols = ["PortXmitDataExtended", "PortRcvDataExtended", "PortXmitPktsExtended", "PortRcvPktsExtended",
        "PortXmitWaitExtended", "SymbolErrorCounterExtended", "LinkDownedCounterExtended",
        "PortRcvErrorsExtended", "PortXmitDiscardsExtended", "Module_Temperature", "rx_total", "fabric_upstream_up"]
with open(sys.argv[1], "w") as f:
    f.write("timestamp,source_id,tag,Node_GUID,port_guid,Port_Number," + ",".join(cols) + ",node_description\n")
    for sw in range(2500):
        guid = "0x%016x" % (0x0c42a10300000000 + sw)
        desc = '"leaf %d ""q"" \\ ,x"' % sw if sw % 7 == 0 else "leaf-%d HCA-1" % sw
        for port in range(1, 41):
            down = (sw + port) % 13 == 0
            vals = ["" if down else str((2**64 - 1 - sw * 1000 - port) if i < 5 else (sw + port + i)) for i in range(9)]
            vals += ["" if down else "%.1f" % (40 + port / 10), "" if down else str(port), "1"]
            f.write("%d,%s,,%s,%s,%d,%s,%s\n" % (ts, guid, guid, guid, port, ",".join(vals), desc))
PY
python3 -u -m http.server 0 --bind 127.0.0.1 --directory "$tmp/upstream" \
  >"$tmp/upstream.log" 2>&1 &
pids+=($!)
up=
for _ in $(seq 100); do
  up=$(sed -n 's/.* port \([0-9][0-9]*\).*/\1/p' "$tmp/upstream.log" | head -1)
  [ -n "$up" ] && break
  sleep 0.1
done
[ -n "$up" ] || { say "the hostile upstream did not start:"; cat "$tmp/upstream.log" >&2; exit 1; }


start data_server --switches 64 --interval-sec 1 --fault-500-pct 20 --fault-slow-ms 5
ds=$addr
start metrics_server --upstream-url "http://$ds/counters" --poll-ms 200
ms=$addr
as=metrics_server_hostile start metrics_server --upstream-url "http://127.0.0.1:$up/counters" --poll-ms 200
hostile=$addr
as=metrics_server_ufm start metrics_server --upstream-url "http://127.0.0.1:$up/ufm" --poll-ms 1000
ufm=$addr
# Several upstreams: a shard of data_server and the hostile CSV, so the
# page has an `upstream` label on the poll families and columns one shard
# lacks (no sample for those switches).
as=metrics_server_sharded start metrics_server \
  --upstream-urls "http://$ds/counters?num_shards=2&shard=0,http://127.0.0.1:$up/counters" --poll-ms 200
sharded=$addr
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=promtool -addext subjectAltName=IP:127.0.0.1 -addext basicConstraints=critical,CA:FALSE \
  -keyout "$tmp/tls.key" -out "$tmp/tls.pem" 2>/dev/null
tls=(--tls-cert-file "$tmp/tls.pem" --tls-key-file "$tmp/tls.key")
as=data_server_tls start data_server --switches 8 --interval-sec 1 "${tls[@]}"
ds_tls=$addr
as=metrics_server_tls start metrics_server --upstream-url "http://$ds/counters" --poll-ms 200 "${tls[@]}"
ms_tls=$addr

status() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://$1$2" || true; }
ok=
for _ in $(seq 150); do   # 15 s
  if [ "$(status "$ms" /telemetry/ListMetrics)" = 200 ]; then ok=1; break; fi
  sleep 0.1
done
[ -n "$ok" ] || { say "metrics_server got no snapshot in 15 s"; tail -5 "$tmp/metrics_server.log" >&2; exit 1; }
for _ in $(seq 150); do   # 15 s
  if [ "$(status "$hostile" /telemetry/ListMetrics)" = 200 ]; then ok=; break; fi
  sleep 0.1
done
[ -z "$ok" ] || { say "metrics_server got no snapshot of the hostile CSV in 15 s"; tail -5 "$tmp/metrics_server_hostile.log" >&2; exit 1; }
for _ in $(seq 300); do   # 30 s
  if [ "$(status "$ufm" /ready)" = 200 ]; then ok=1; break; fi
  sleep 0.1
done
[ -n "$ok" ] || { say "metrics_server got no snapshot of the UFM CSV in 30 s"; tail -5 "$tmp/metrics_server_ufm.log" >&2; exit 1; }
for _ in $(seq 150); do   # 15 s
  if [ "$(status "$sharded" /ready)" = 200 ]; then ok=1; break; fi
  sleep 0.1
done
[ -n "$ok" ] || { say "the sharded metrics_server was not ready in 15 s"; tail -5 "$tmp/metrics_server_sharded.log" >&2; exit 1; }
# Traffic on every endpoint, a few errors among it, and a poll or two more.
for path in /telemetry/ListMetrics '/telemetry/GetMetric?switch_id=sw-000&metric=cpu_util_pct' \
  '/telemetry/GetMetric?switch_id=nope&metric=cpu_util_pct' /telemetry/GetMetric /stats /health /ready /nope; do
  status "$ms" "$path" >/dev/null
done
status "$ds" /counters >/dev/null
status "$ds" /nope >/dev/null
sleep 1

failed=0
while read -r name base; do
  if ! curl -sf --max-time 5 --cacert "$tmp/tls.pem" -D "$tmp/$name.head" -o "$tmp/$name.prom" "$base/metrics"; then
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
metrics_server http://$ms
data_server http://$ds
metrics_server_hostile_columns http://$hostile
metrics_server_sharded http://$sharded
metrics_server_ufm_100k_ports http://$ufm
data_server_tls https://$ds_tls
metrics_server_tls https://$ms_tls
EOF
for want in '^fabric_port_xmit_data_extended_total{node_guid="0x0c42a10300000000",port_number="1"} 18446744073709551614$' \
  '^fabric_port_info{node_guid="0x0c42a10300000006",port_number="7",source_id=' '^# TYPE fabric_module_temperature gauge$'; do
  if ! grep -q "$want" "$tmp/metrics_server_ufm_100k_ports.prom"; then
    say "metrics_server_ufm_100k_ports: nothing matches $want"; failed=1
  fi
done
for name in data_server_tls metrics_server_tls; do
  if ! grep -q '^fabric_tls_cert_not_after_timestamp_seconds{serial="' "$tmp/$name.prom"; then
    say "$name: no fabric_tls_cert_not_after_timestamp_seconds sample"; failed=1
  fi
done
exit "$failed"
