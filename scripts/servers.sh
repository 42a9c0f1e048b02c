# Sourced by the scripts that need both servers running (promtool_check.sh,
# e2e_prometheus.sh): installs Debian's prometheus on demand, keeps a temp
# dir and the started pids, stops everything on exit, and starts a server
# from $bin_dir on 127.0.0.1:0, reading its address from the `startup` line.
# The caller sets bin_dir and defines say().

# need_prometheus: installs Debian's `prometheus` (promtool with it) if missing.
need_prometheus() {
  command -v prometheus >/dev/null && command -v promtool >/dev/null && return 0
  say "installing prometheus (Debian package)"
  local sudo=(); [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null
}

for b in data_server metrics_server; do
  [ -x "$bin_dir/$b" ] || { say "no $bin_dir/$b (build first)"; exit 2; }
done

tmp=$(mktemp -d)
pids=()
# shellcheck disable=SC2317  # invoked by the trap
cleanup() {
  trap - EXIT INT TERM
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# [as=LOG] start NAME ARGS...: runs $bin_dir/NAME on 127.0.0.1:0 with a
# clean environment (no knob leaks in from this shell) and sets $addr from
# its NDJSON `startup` line; exits 1 if it does not start. Its output goes
# to $tmp/LOG.log and .err (LOG defaults to NAME; give each instance of a
# binary its own).
start() {
  local name=$1; shift
  local log=$tmp/${as:-$name}
  env -i "$bin_dir/$name" --host 127.0.0.1 --port 0 "$@" \
    >"$log.log" 2>"$log.err" &
  pids+=($!)
  local pid=$!
  for _ in $(seq 100); do
    addr=$(grep -a -m1 '"event": *"startup"' "$log.log" \
      | sed -n 's/.*"addr": *"\([^"]*\)".*/\1/p' || true)
    [ -n "$addr" ] && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  say "${as:-$name} did not start:"; cat "$log.err" >&2
  exit 1
}
