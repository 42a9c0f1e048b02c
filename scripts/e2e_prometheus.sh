#!/usr/bin/env bash
# End to end with a real Prometheus (`make e2e-prometheus`): starts
# data_server and metrics_server from BIN_DIR (default
# ${CARGO_TARGET_DIR:-target}/release) and a Prometheus scraping both every
# second, all on 127.0.0.1 and free ports, then checks through Prometheus's
# HTTP API that:
#   - fabric_temperature_celsius has a series per switch (>= 64);
#   - fabric_cpu_util_ratio{switch_id="sw-000"} equals metrics_server's own
#     GetMetric cpu_util_pct / 100 (within 1e-9) for the same snapshot;
#   - fabric_packet_errors_total (a counter) has a series per switch;
#   - fabric_upstream_up is 1, and up is 1 for both jobs;
#   - the alerting rules of deploy/prometheus/alerts.yml are loaded and
#     evaluate without error, FabricPollerDown and FabricMetricsServerAbsent
#     quiet;
#   - scaling out (README, "Scaling out"; deploy/prometheus/prometheus.yml):
#     two more metrics_servers over disjoint shards of the same data_server
#     (num_shards=4: A polls shards 0 and 1, B shards 2 and 3, through
#     --upstream-urls), scraped as job fabric_sharded (fabric_group a, b):
#     count(fabric_temperature_celsius) over the job is the fleet size, no
#     switch_id is in both, the switch ids are sw-000 .. sw-063 and each
#     group has exactly its shards' (i mod 4); every switch's value equals
#     the unsharded metrics_server's; fabric_upstream_up is 1 for four
#     distinct upstream labels, two per group; both answer /ready 200 and
#     /stats lists their two shards;
#   - TLS (README, "TLS"): a data_server and a metrics_server that speak
#     only HTTPS, with a CA and certificate made here by `openssl`; the
#     metrics_server polls the data_server over HTTPS (--upstream-ca-file)
#     and Prometheus scrapes it with `scheme: https` and `tls_config.ca_file`
#     (job metrics_server_tls): up is 1, a series per switch, its upstream up.
# Installs Debian's `prometheus` package when it is missing. Every wait is
# bounded; everything started is stopped on exit. Exit 0 = all checks pass.
#
#   scripts/e2e_prometheus.sh [BIN_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
bin_dir=${1:-${CARGO_TARGET_DIR:-target}/release}
switches=64

say() { echo "e2e_prometheus: $*" >&2; }

# shellcheck source=scripts/servers.sh
. scripts/servers.sh
need_prometheus

fail() {
  say "FAIL: $*"
  for f in "$tmp"/*.err "$tmp"/prometheus.log; do
    [ -s "$f" ] && { say "--- tail of ${f##*/}"; tail -5 "$f" >&2; }
  done
  exit 1
}


# One snapshot for the whole run (interval 1 h), so a value read from
# Prometheus and from the API describe the same data.
start data_server --switches "$switches" --interval-sec 3600
ds=$addr
start metrics_server --upstream-url "http://$ds/counters" --poll-ms 200
ms=$addr
# Scaling out: one metrics_server per group of shards of the same fleet.
shard() { echo "http://$ds/counters?num_shards=4&shard=$1"; }
as=metrics_server_a start metrics_server --upstream-urls "$(shard 0),$(shard 1)" --poll-ms 200
ms_a=$addr
as=metrics_server_b start metrics_server --upstream-urls "$(shard 2),$(shard 3)" --poll-ms 200
ms_b=$addr

# TLS: a lab CA and one certificate for 127.0.0.1, as the README shows.
pki=$tmp/pki
mkdir -p "$pki"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=e2e-ca -keyout "$pki/ca.key" -out "$pki/ca.pem" 2>/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 -addext basicConstraints=critical,CA:FALSE \
  -CA "$pki/ca.pem" -CAkey "$pki/ca.key" -keyout "$pki/server.key" -out "$pki/server.pem" 2>/dev/null \
  || fail "openssl could not make the test certificates"
tls=(--tls-cert-file "$pki/server.pem" --tls-key-file "$pki/server.key")
as=data_server_tls start data_server --switches "$switches" --interval-sec 3600 "${tls[@]}"
ds_tls=$addr
as=metrics_server_tls start metrics_server --upstream-url "https://$ds_tls/counters" \
  --upstream-ca-file "$pki/ca.pem" --poll-ms 200 "${tls[@]}"
ms_tls=$addr

# A free loopback port for Prometheus (it cannot report a port 0 it bound).
prom_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
prom=127.0.0.1:$prom_port
cat >"$tmp/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files: ["$PWD/deploy/prometheus/alerts.yml"]
scrape_configs:
  - job_name: metrics_server
    static_configs: [{targets: ["$ms"]}]
  - job_name: data_server
    static_configs: [{targets: ["$ds"]}]
  - job_name: fabric_sharded
    static_configs:
      - {targets: ["$ms_a"], labels: {fabric_group: a}}
      - {targets: ["$ms_b"], labels: {fabric_group: b}}
  - job_name: metrics_server_tls
    scheme: https
    tls_config: {ca_file: "$pki/ca.pem"}
    static_configs: [{targets: ["$ms_tls"]}]
EOF
prometheus --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/tsdb" \
  --web.listen-address="$prom" --log.level=warn >"$tmp/prometheus.log" 2>&1 &
pids+=($!)

# q PROMQL: the instant query's result as one "labels-json<TAB>value" line
# per series (nothing if empty; exit 1 if Prometheus did not answer).
q() {
  curl -sfG --max-time 5 --data-urlencode "query=$1" "http://$prom/api/v1/query" \
    | python3 -c '
import json, sys
r = json.load(sys.stdin)
if r.get("status") != "success": sys.exit(1)
for s in r["data"]["result"]:
    print(json.dumps(s["metric"], sort_keys=True) + "\t" + s["value"][1])'
}
# value PROMQL: the value of its only series, or nothing.
value() { q "$1" 2>/dev/null | awk -F'\t' 'NR == 1 { print $2 }' || true; }

# Wait (30 s at most) for metrics_server's first scrape with fleet data to
# land (the sharded ones are waited for below).
deadline=$((SECONDS + 30))
until [ -n "$(value 'count(fabric_temperature_celsius{job="metrics_server"})')" ]; do
  [ $SECONDS -lt $deadline ] || fail "no fabric_temperature_celsius{job=\"metrics_server\"} in Prometheus after 30 s"
  sleep 0.5
done

pass=0 failed=0
check() {   # check NAME OK? DETAIL
  if [ "$2" = 1 ]; then pass=$((pass + 1)); printf '  ok    %-28s %s\n' "$1" "$3"
  else failed=$((failed + 1)); printf '  FAIL  %-28s %s\n' "$1" "$3"; fi
}
is() { python3 -c "import sys; sys.exit(0 if $1 else 1)" && echo 1 || echo 0; }

n=$(q 'fabric_temperature_celsius{job="metrics_server"}' 2>/dev/null | wc -l || true)
check "temperature series" "$(is "$n >= $switches")" "$n series (want >= $switches)"
n=$(q 'fabric_packet_errors_total{job="metrics_server"}' 2>/dev/null | wc -l || true)
check "packet errors counters" "$(is "$n >= $switches")" "$n series (want >= $switches)"

# Prometheus's value and the API's for sw-000; retry while they differ
# (a poll or scrape in between), 15 s at most.
deadline=$((SECONDS + 15))
while :; do
  got=$(value 'fabric_cpu_util_ratio{job="metrics_server",switch_id="sw-000"}')
  api=$(curl -sf --max-time 5 "http://$ms/telemetry/GetMetric?switch_id=sw-000&metric=cpu_util_pct" \
    | sed -n 's/.*"value":\([^,}]*\).*/\1/p' || true)
  agree=0
  [ -n "$got" ] && [ -n "$api" ] && agree=$(is "abs(float('$got') - float('$api') / 100) <= 1e-9")
  [ "$agree" = 1 ] || [ $SECONDS -ge $deadline ] && break
  sleep 0.5
done
check "cpu ratio sw-000 = api/100" "$agree" "prometheus ${got:-none}, GetMetric ${api:-none} %"

v=$(value 'fabric_upstream_up{job="metrics_server"}')
check "fabric_upstream_up" "$(is "'$v' == '1'")" "${v:-none}"
for job in metrics_server data_server; do
  v=$(value "up{job=\"$job\"}")
  check "up{job=\"$job\"}" "$(is "'$v' == '1'")" "${v:-none}"
done
v=$(value 'fabric_producer_switches{job="data_server"}')
check "fabric_producer_switches" "$(is "'$v' == '$switches'")" "${v:-none}"

# The alerting rules: all loaded, evaluated without error (retry while a
# rule has not been evaluated since the first scrape, 10 s at most), and
# those about the poller quiet. (The simulator's bad links may trip
# FabricPacketErrors, and this run's one snapshot would be stale past 60 s.)
rules() {
  curl -sf --max-time 5 "http://$prom/api/v1/rules" | python3 -c '
import json, sys
rules = [r for g in json.load(sys.stdin)["data"]["groups"] for r in g["rules"]]
print(len(rules), ",".join(sorted({r["health"] for r in rules})),
      ",".join(sorted(r["name"] for r in rules
                      if r.get("state") != "inactive"
                      and r["name"] in ("FabricPollerDown", "FabricMetricsServerAbsent"))) or "-")'
}
deadline=$((SECONDS + 10))
while :; do
  read -r n health firing < <(rules || echo "0 none -")
  [ "$health" = ok ] && [ "$firing" = - ] || [ $SECONDS -ge $deadline ] && break
  sleep 0.5
done
check "alerting rules" "$(is "$n == 5 and '$health' == 'ok' and '$firing' == '-'")" \
  "$n rules, health $health, pending or firing: $firing"

# Scaling out. Wait (30 s at most) for both groups' shards to be scraped.
sharded='job="fabric_sharded"'
deadline=$((SECONDS + 30))
until [ "$(value "count(fabric_temperature_celsius{$sharded})")" = "$switches" ] \
  && [ "$(value "count(fabric_upstream_up{$sharded} == 1)")" = 4 ]; do
  if [ $SECONDS -ge $deadline ]; then
    say "the sharded metrics_servers are not all scraped after 30 s (the checks below say what is missing)"
    break
  fi
  sleep 0.5
done
v=$(value "count(fabric_temperature_celsius{$sharded})")
check "sharded: fleet size" "$(is "'$v' == '$switches'")" \
  "count(fabric_temperature_celsius) ${v:-none} (want $switches)"
n=$(q "count by (switch_id) (fabric_temperature_celsius{$sharded}) > 1" 2>/dev/null | wc -l || true)
check "sharded: no switch twice" "$(is "$n == 0")" "$n switch ids in both groups"
# Which switch ids each group holds: together sw-000 .. sw-063, and A only
# shards 0, 1 of 4 (index mod 4), B only 2, 3.
groups=$(q "fabric_temperature_celsius{$sharded}" 2>/dev/null | python3 -c '
import json, sys
seen, bad = [], []
for line in sys.stdin:
    m = json.loads(line.split("\t")[0])
    i = int(m["switch_id"].removeprefix("sw-"))
    seen.append(i)
    if i % 4 not in {"a": (0, 1), "b": (2, 3)}.get(m.get("fabric_group"), ()):
        bad.append(m.get("fabric_group", "?") + ":" + m["switch_id"])
ok = sorted(seen) == list(range('"$switches"')) and not bad
print(int(ok), "%d ids, %d in the wrong group%s" % (len(seen), len(bad), (" (" + " ".join(bad[:4]) + ")") if bad else ""))' \
  || echo "0 no answer")
check "sharded: groups hold their shards" "${groups%% *}" "${groups#* }"
# The same snapshot (interval 1 h) through shards and whole: every value equal.
v=$(value "count(fabric_temperature_celsius{$sharded} == ignoring(job, instance, fabric_group) fabric_temperature_celsius{job=\"metrics_server\"})")
check "sharded = unsharded values" "$(is "'$v' == '$switches'")" "${v:-none} of $switches switches agree"
v=$(value "count(fabric_upstream_up{$sharded} == 1)")
d=$(value "count(count by (upstream) (fabric_upstream_up{$sharded}))")
check "sharded: fabric_upstream_up" "$(is "'$v' == '4' and '$d' == '4'")" \
  "${v:-none} upstreams up (want 4), ${d:-none} distinct upstream labels (want 4)"
for g in a b; do
  want=$([ $g = a ] && echo "0 1" || echo "2 3")
  got=$(q "fabric_upstream_up{$sharded,fabric_group=\"$g\"}" 2>/dev/null \
    | sed -n 's/.*"upstream": *"[^"]*shard=\([0-9]*\)".*/\1/p' | sort | xargs || true)
  check "sharded: group $g upstreams" "$(is "'$got' == '$want'")" "shards ${got:-none} (want $want)"
done
# Each sharded metrics_server's own view: ready, and two shards of 16.
for g in a b; do
  at=$([ $g = a ] && echo "$ms_a" || echo "$ms_b")
  ready=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://$at/ready" || true)
  shards=$(curl -sf --max-time 5 "http://$at/stats" \
    | python3 -c 'import json, sys; print(",".join(str(s["switches"]) for s in json.load(sys.stdin)["shards"]))' \
    2>/dev/null || true)
  check "sharded: metrics_server $g" "$(is "'$ready' == '200' and '$shards' == '16,16'")" \
    "/ready ${ready:-none}, /stats shards' switches ${shards:-none} (want 200, 16,16)"
done

# TLS: scraped over HTTPS, fed over HTTPS. Wait (30 s at most).
tlsjob='job="metrics_server_tls"'
deadline=$((SECONDS + 30))
until [ "$(value "count(fabric_temperature_celsius{$tlsjob})")" = "$switches" ]; do
  [ $SECONDS -lt $deadline ] || { say "metrics_server_tls is not scraped after 30 s"; break; }
  sleep 0.5
done
v=$(value "up{$tlsjob}")
check "tls: up (scheme https)" "$(is "'$v' == '1'")" "${v:-none}"
v=$(value "count(fabric_temperature_celsius{$tlsjob})")
check "tls: series" "$(is "'$v' == '$switches'")" "${v:-none} (want $switches)"
v=$(value "fabric_upstream_up{$tlsjob}")
check "tls: upstream over https" "$(is "'$v' == '1'")" "${v:-none}"
plain=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://$ms_tls/health" || true)
check "tls: plain HTTP refused" "$(is "'$plain' == '400'")" "http:// answered ${plain:-nothing} (want 400)"

echo "e2e_prometheus: $pass passed, $failed failed (prometheus $prom, metrics_server $ms, sharded $ms_a $ms_b, tls $ms_tls, data_server $ds)"
[ "$failed" -eq 0 ]
