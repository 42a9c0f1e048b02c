#!/usr/bin/env bash
# Builds and runs both servers with the knobs of .env.example (and .env, if
# present, on top; variables already set in the shell win over both).
# Ctrl-C stops both; if either exits on its own, the other is stopped too.
set -euo pipefail
cd "$(dirname "$0")/.."

# Exports KEY=VALUE lines of a file for every KEY the environment lacks.
load_defaults() {
  local file=$1 key value
  [ -f "$file" ] || return 0
  while IFS='=' read -r key value; do
    case "$key" in ''|\#*) continue ;; esac
    value=${value%\"}; value=${value#\"}
    if [ -z "${!key+set}" ]; then export "$key=$value"; fi
  done < "$file"
}
load_defaults .env
load_defaults .env.example

# Not quiet: the first build takes a minute, and shows its progress.
cargo build --release --bins

pids=()
stop() {
  trap - INT TERM EXIT
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
}
trap stop INT TERM EXIT

target/release/data_server & pids+=($!)
target/release/metrics_server & pids+=($!)
echo "run: data_server on :$DATA_PORT, metrics_server on :$METRICS_PORT (Ctrl-C stops both)" >&2

# Return when either exits (a taken port, a bad knob) or on Ctrl-C.
set +e
wait -n "${pids[@]}"
status=$?
stop
exit "$status"
