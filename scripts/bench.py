#!/usr/bin/env python3
"""Throughput and latency of metrics_server next to a raw std baseline.

Usage: scripts/bench.py [--no-build] [--bin-dir DIR] [--sizes 64,10000,100000]
                        [--rounds 2] [--duration 5] [--smoke] [--out PATH]
                        [--compare NAME=BINDIR]...

Python 3 standard library only, plus wrk (Debian's `wrk`; installed with
apt-get when missing and running as root). Everything listens on 127.0.0.1.

What it does
------------
1. `cargo build --bins --examples` in the profile of --bin-dir (release by
   default; skipped with --no-build, except that a missing
   DIR/examples/raw_baseline is built). The three binaries are copied to a
   temporary directory and run from there, data_server under the name
   `producer_bench`: a rebuild in the tree mid-run cannot swap them, and
   whatever on a shared host kills processes named data_server leaves ours
   alone. Each --compare NAME=BINDIR (repeatable; another build, say the
   commit before: `--compare before=/tmp/before/release`) has its
   metrics_server (required) and data_server (when present; copied, never
   run) copied too, as `cmp-NAME-consumer` and `cmp-NAME-producer`: names
   that a kill by process name (data_server, metrics_server) cannot hit.
   Nothing is built for a compare side, and its BINDIR needs no
   examples/raw_baseline: the baseline always comes from our own build.
2. For each fabric size (switches): data_server (--interval-sec 1, a new
   snapshot every second) and metrics_server (--poll-ms 500, LOG_LEVEL=warn)
   on port 0; each one's address comes from its NDJSON `startup` line. Each
   compare side gets one more metrics_server of its build, with the same
   flags and environment, polling the SAME data_server: every side serves
   the same snapshots. Once every side's ListMetrics answers 200 with that
   many switches, each side's /stats is sampled until its poller swapped in
   at least 3 new snapshots (poll.updated_200 grew by 3):
   `poll_last_cycle_ms` is read right after each swap (when no other poll
   ran since the previous sample, so it is that swap's cycle), and the
   side's VmRSS after them is its RSS for the size. All sides keep running
   and polling the whole time the size is measured, whichever side wrk is
   loading.
3. Per scenario, the exact answer our metrics_server gives for its URL is
   captured on a raw socket (head, then Content-Length body bytes) into a
   file, and examples/raw_baseline serves those bytes for every request
   (adding `Connection: close` when asked to close): the baseline does no
   work beyond HTTP on std threads, so side/base is what a stack costs.
   Then wrk runs against ours, the baseline, each compare side (in the
   order given), ours, the baseline, ... (--rounds of each, --duration
   seconds each): slow drift of a noisy host hits every side.
4. The report takes each side's BEST run (highest req/s) and that same
   run's latencies: on a shared machine the worst runs measure neighbours,
   not us. Every run is printed as it finishes and listed in the markdown.
   Effective concurrency is req/s x mean latency (Little's law: requests in
   flight on average); well below wrk's -c means connections sat idle,
   i.e. some were starved (not accepted, or queued behind others).
5. Keep-alive burst (at the GetMetric size): BURST_CLIENTS (500; 100 with
   --smoke) clients open their connections to /health at once, from one
   thread with non-blocking sockets (epoll through `selectors`): every
   socket is created first, then all connect() calls go out back to back,
   and the common start is taken just before the first. Each client then
   sends `GET /health HTTP/1.1` keep-alive requests back to back for
   BURST_S (3 s), opening a new connection whenever it is told
   `Connection: close` (or the connection ends), and records when its
   first 200 arrived after the common start (other statuses are counted,
   not taken as an answer). Reported per side: how many of N had a 200
   within 1 s, the slowest and median first 200 (and how many never had
   one), when the last client's first TCP handshake completed, the host's
   TcpExt ListenOverflows during the burst (SYNs dropped because the
   listener's accept queue was full: such a client's kernel sends its SYN
   again only after 1 s, so overflows explain first answers just over
   1 s), answers, reconnects, non-200 answers, socket errors, and the
   side's VmRSS after the burst. It runs once per side per round (ours,
   each compare side, ...), after the wrk scenarios of that size (their
   "RSS after load" is taken before it); the table shows each side's
   WORST round (fewest answered within 1 s, then slowest): a starved
   client is a server property, not noise. The bench's RLIMIT_NOFILE soft
   limit is raised (to at most the hard limit) for the burst when it is
   too low, and put back afterwards.

Scenarios (GetMetric ones at 64 switches, or the smallest --sizes):
  GetMetric keep-alive at -c1, -c10, -c100; GetMetric with `Connection:
  close` at -c100; ListMetrics at every size with -c10 (see LIST_CONNS);
  the keep-alive burst.
  --smoke: 64 switches, 1 round of 1 s, GetMetric keep-alive and close at
  -c10, ListMetrics, and a burst of 100 clients; writes no markdown unless
  --out is given. `make test` style:
      python3 scripts/bench.py --smoke --no-build --bin-dir target/debug

Output: BENCHMARKS.md in the repository root (--out PATH elsewhere): the
results table (a req/s, p50/p99 and ratio-to-baseline column group per
compare side), poll cycle and RSS per size and side, the burst, the target
lines and every run.

Targets of the issue are printed as PASS/FAIL lines, judged on ours only
(compare sides are for reading next to them); they never decide the exit
status:
  GetMetric keep-alive c100 >= 0.65 x baseline req/s, with p99 <= 5 ms;
  ListMetrics 64 >= 0.65 x; GetMetric `Connection: close` c100 >= 0.8 x;
  ListMetrics 100k mean latency <= 1.5 x the baseline's; poll cycle
  (median after swaps) 10k <= 10 ms, 100k <= 100 ms; RSS after swaps
  64 <= 8 MB, 100k <= 80 MB; 500 simultaneous keep-alive clients all
  answered within 1 s.

Exit status: 0 it measured; 1 a measurement broke (a server died, wrk
failed, or more than 1% of a run's requests were wrk errors); 2 setup error
(build failed, wrk missing, a binary missing, a server that would not
start); 130 interrupted. Logs of every process go to a temporary directory,
kept (and named) when the exit status is not 0.
"""

from __future__ import annotations

import argparse
import atexit
import datetime
import errno
import json
import os
import re
import resource
import selectors
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SIZES = (64, 10_000, 100_000)
GET_CONNS = (1, 10, 100)
CLOSE_CONNS = 100
# ListMetrics is the bulk call (a dashboard or exporter fetching the whole
# fabric), made by a few clients, not hundreds. Ten connections keep both
# servers busy on every core of a small host, and at 100k switches (~10 MB a
# body) they keep wrk's own buffers and the loopback copies from becoming
# the thing measured.
LIST_CONNS = 10
MIN_SWAPS = 3
WRK_ERROR_LIMIT = 0.01  # a run whose errors exceed this share of requests is broken
WRK_TIMEOUT = "5s"      # wrk's per-request timeout (its default 2 s is tight for 100k)
STARTUP_S = 20.0        # a server must log `startup` within this
READY_S = 60.0          # ... and serve a snapshot of the right size within this
SWAPS_S = 30.0          # MIN_SWAPS snapshot swaps must be seen within this

BURST_CLIENTS = 500     # the keep-alive burst: clients opened at once ...
BURST_CLIENTS_SMOKE = 100
BURST_S = 3.0           # ... each sending requests back to back for this long
BURST_WITHIN_S = 1.0    # ... and each must have its first answer within this
BURST_SETTLE_S = 0.5    # pause after a burst's sockets close, before the next

# The targets.
T_GET_CONNS = 100
T_GET_RATIO, T_GET_P99_MS = 0.65, 5.0
T_CLOSE_RATIO = 0.8
T_LIST64_RATIO = 0.65
T_LIST100K_MEAN = 1.5
T_POLL_MS = {10_000: 10.0, 100_000: 100.0}
T_RSS_MB = {64: 8.0, 100_000: 80.0}

# wrk's done() hook: the summary, wrk's own figures, and the whole latency
# histogram (value in us, count), so the coordinated-omission correction wrk
# applies before done() can be undone (see measured_latency).
LUA = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  local mean = latency.mean
  if mean ~= mean or summary.requests == 0 then mean = 0 end
  local hist = {}
  for i = 1, #latency do
    local v, c = latency(i)
    hist[#hist + 1] = string.format("%d,%d", v, c)
  end
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"wrk_latency_us":{"mean":%.3f,"p50":%d,"p99":%d,"max":%d},"hist":[%s]}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    mean, latency:percentile(50), latency:percentile(99), latency.max,
    table.concat(hist, ",")))
end
"""


class SetupError(Exception):
    """The harness could not start measuring (exit 2)."""


class Broken(Exception):
    """A measurement could not be trusted or finished (exit 1)."""


class Interrupted(BaseException):
    """Ctrl-C, SIGTERM or SIGHUP."""


def say(msg: str) -> None:
    print(msg, flush=True)


def size_label(n: int) -> str:
    return f"{n // 1000}k" if n >= 10_000 and n % 1000 == 0 else str(n)


# --------------------------------------------------------------------------
# Child processes
# --------------------------------------------------------------------------

CHILDREN: list["Child"] = []


class Child:
    """A server: NDJSON stdout watched for `startup`, both streams logged."""

    def __init__(self, name: str, argv: list[str], log_dir: str, env: dict[str, str]):
        self.name = name
        self.startup: dict | None = None
        self.started = threading.Event()
        self._out = open(os.path.join(log_dir, f"{name}.log"), "ab")
        try:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env=env,  # only these: no knob leaks in from the caller's shell
                start_new_session=True,  # a terminal's Ctrl-C reaches us; we stop them
            )
        except OSError as e:
            raise SetupError(f"cannot start {argv[0]}: {e}") from e
        CHILDREN.append(self)
        self.pid = self.proc.pid
        for stream, watch in ((self.proc.stdout, True), (self.proc.stderr, False)):
            threading.Thread(target=self._pump, args=(stream, watch), daemon=True).start()

    def _pump(self, stream, watch: bool) -> None:
        for line in stream:
            self._out.write(line)
            self._out.flush()
            if watch and self.startup is None:
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                if isinstance(ev, dict) and ev.get("event") == "startup":
                    self.startup = ev
                    self.started.set()

    def wait_addr(self) -> tuple[str, int]:
        """127.0.0.1 and the port of the startup line's `addr`."""
        deadline = time.monotonic() + STARTUP_S
        while not self.started.wait(0.02):
            if self.proc.poll() is not None:
                raise SetupError(f"{self.name} exited with {self.proc.returncode} before its "
                                 f"startup line (log: {self._out.name})")
            if time.monotonic() > deadline:
                raise SetupError(f"{self.name} logged no startup line in {STARTUP_S:.0f} s")
        addr = str(self.startup.get("addr", ""))
        port = addr.rpartition(":")[2]
        if not port.isdigit():
            raise SetupError(f"{self.name}: no port in startup addr {addr!r}")
        return ("127.0.0.1", int(port))  # addr may be 0.0.0.0:PORT

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 2 s."""
        if self.proc.poll() is None:
            try:
                self.proc.terminate()
                self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
            except OSError:
                pass
        if self in CHILDREN:
            CHILDREN.remove(self)


def stop_all() -> None:
    for c in list(CHILDREN):
        try:
            c.stop()
        except Exception:  # noqa: BLE001 - cleanup goes on
            pass


def check_alive(*children: Child) -> None:
    for c in children:
        if not c.alive():
            raise Broken(f"{c.name} (pid {c.pid}) died with status {c.proc.returncode}")


# --------------------------------------------------------------------------
# HTTP on a raw socket
# --------------------------------------------------------------------------

def fetch(addr: tuple[str, int], path: str, timeout: float = 30.0) -> tuple[int, bytes, bytes]:
    """One keep-alive style GET; returns status, head (with its blank line)
    and exactly Content-Length body bytes."""
    with socket.create_connection(addr, timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                raise OSError("connection closed inside the head")
            buf += chunk
            if len(buf) > 1 << 20:
                raise OSError("head over 1 MiB")
        end = buf.index(b"\r\n\r\n") + 4
        head, body = buf[:end], bytearray(buf[end:])
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        length = None
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        if length is None:
            raise OSError(f"{path}: answer without Content-Length")
        while len(body) < length:
            chunk = s.recv(min(1 << 20, length - len(body)))
            if not chunk:
                raise OSError(f"{path}: connection closed inside the body")
            body += chunk
        if len(body) != length:
            raise OSError(f"{path}: {len(body) - length} bytes after the body")
        return status, head, bytes(body)


def get_json(addr, path: str):
    status, _, body = fetch(addr, path)
    return status, json.loads(body) if body else None


# --------------------------------------------------------------------------
# Setup: wrk, build, binaries
# --------------------------------------------------------------------------

def ensure_wrk() -> str:
    if shutil.which("wrk") is None:
        if os.geteuid() != 0:
            raise SetupError("wrk is not installed; install it (Debian: sudo apt-get install -y wrk)")
        say("wrk missing: apt-get install -y wrk")
        if subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"]).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"])
            subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"])
        if shutil.which("wrk") is None:
            raise SetupError("wrk is not installed and apt-get install -y wrk failed")
    out = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    return ((out.stdout or out.stderr).splitlines() or ["wrk (unknown version)"])[0].strip()


def profile_flags(bin_dir: str) -> list[str]:
    """cargo flags that build into bin_dir (target[/TRIPLE]/PROFILE)."""
    path = os.path.abspath(bin_dir)
    profile, parent = os.path.basename(path), os.path.dirname(path)
    flags = [] if profile == "debug" else ["--release"] if profile == "release" else ["--profile", profile]
    if os.path.basename(parent) != "target" and os.path.basename(os.path.dirname(parent)) == "target":
        flags += ["--target", os.path.basename(parent)]
    return flags


def cargo(args: list[str]) -> None:
    say("$ cargo " + " ".join(args))
    if subprocess.run(["cargo", *args], cwd=REPO).returncode != 0:
        raise SetupError("cargo " + " ".join(args) + " failed")


def prepare_binaries(args, tmp: str) -> dict[str, str]:
    if not args.no_build:
        cargo(["build", "--bins", "--examples", *profile_flags(args.bin_dir)])
    sources = {
        "producer_bench": os.path.join(args.bin_dir, "data_server"),
        "metrics_server": os.path.join(args.bin_dir, "metrics_server"),
        "raw_baseline": os.path.join(args.bin_dir, "examples", "raw_baseline"),
    }
    if not os.path.isfile(sources["raw_baseline"]):
        cargo(["build", "--examples", *profile_flags(args.bin_dir)])
    out = {}
    for name, src in sources.items():
        if not (os.path.isfile(src) and os.access(src, os.X_OK)):
            raise SetupError(f"no executable {src} (build it, or pass --bin-dir)")
        out[name] = os.path.join(tmp, name)
        shutil.copy2(src, out[name])
    return out


def prepare_compare(compare: list[tuple[str, str]], tmp: str) -> dict[str, dict]:
    """Copies each compare build's metrics_server (required) and data_server
    (when present; never run: ours feeds every side) into tmp, under names
    no kill by process name can hit. Nothing is built for them."""
    out = {}
    for name, bin_dir in compare:
        ms_src = os.path.join(bin_dir, "metrics_server")
        if not (os.path.isfile(ms_src) and os.access(ms_src, os.X_OK)):
            raise SetupError(f"--compare {name}: no executable {ms_src}")
        ms_dst = os.path.join(tmp, f"cmp-{name}-consumer")
        shutil.copy2(ms_src, ms_dst)
        data_src, data_dst = os.path.join(bin_dir, "data_server"), None
        if os.path.isfile(data_src):
            data_dst = os.path.join(tmp, f"cmp-{name}-producer")
            shutil.copy2(data_src, data_dst)
        out[name] = {"metrics_server": ms_dst, "producer": data_dst, "bin_dir": bin_dir}
    return out


# --------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------

def vm_rss_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def wait_ready(ms: Child, data: Child, addr, size: int) -> dict:
    """Polls until ListMetrics answers 200 and /stats shows `size` switches;
    returns the ListMetrics document."""
    deadline = time.monotonic() + READY_S
    last = "no answer yet"
    while time.monotonic() < deadline:
        check_alive(ms, data)
        try:
            status, doc = get_json(addr, "/stats")
            if status == 200 and (doc.get("snapshot") or {}).get("switches") == size:
                status, doc = get_json(addr, "/telemetry/ListMetrics")
                if status == 200:
                    return doc
            last = f"status {status}"
        except (OSError, ValueError) as e:
            last = str(e)
        time.sleep(0.05)
    raise SetupError(f"{ms.name} served no {size}-switch snapshot in {READY_S:.0f} s ({last})")


def watch_swaps(sides: list[tuple[str, Child, tuple]], data: Child, want: int) -> dict[str, dict]:
    """Samples each side's /stats until its poll.updated_200 grew by `want`
    (sides are (name, metrics_server, addr), sampled in turn); returns per
    side the poll cycles seen right after swaps and VmRSS after them."""
    deadline = time.monotonic() + SWAPS_S
    state = {name: {"first": None, "prev": None, "cycles": [], "done": False} for name, _, _ in sides}
    while time.monotonic() < deadline and not all(st["done"] for st in state.values()):
        for name, ms, addr in sides:
            st = state[name]
            if st["done"]:
                continue
            check_alive(ms, data)
            status, doc = get_json(addr, "/stats")
            if status != 200:
                raise Broken(f"{ms.name}: /stats answered {status}")
            try:
                poll = doc["poll"]
                cur = (poll["updated_200"], poll["updated_200"] + poll["not_modified_304"] + poll["errors"])
            except (KeyError, TypeError) as e:
                raise Broken(f"{ms.name}: /stats has no poll counters ({e!r})") from e
            prev = st["prev"]
            if st["first"] is None:
                st["first"] = cur
            elif cur[0] == prev[0] + 1 and cur[1] == prev[1] + 1 and doc.get("poll_last_cycle_ms") is not None:
                st["cycles"].append(float(doc["poll_last_cycle_ms"]))  # the last poll was this swap
            st["prev"] = cur
            if cur[0] - st["first"][0] >= want and len(st["cycles"]) >= want:
                st["done"] = True
                st["rss_kb"] = vm_rss_kb(ms.pid)
        time.sleep(0.05)
    out = {}
    for name, ms, _ in sides:
        st = state[name]
        swaps = st["prev"][0] - st["first"][0]
        if swaps < want:
            say(f"  warning: {name}: only {swaps} snapshot swaps in {SWAPS_S:.0f} s")
        rss = st["rss_kb"] if st["done"] else vm_rss_kb(ms.pid)
        out[name] = {"swaps": swaps, "cycles": st["cycles"], "rss_kb": rss}
    return out


def measured_latency(result: dict, conns: int) -> dict:
    """Mean, p50, p99 and max (us) of the latencies wrk measured.

    Before done() runs, wrk 4 "corrects" its histogram for coordinated
    omission (stats_correct: every latency n >= 2e, e = duration / (requests /
    connections), also counts as n-e, n-2e, ... while above e), which adds
    samples that were never requests: its mean can then exceed what -c
    connections could have had in flight. The correction only adds
    (targets m > e receive the counts of m+e, m+2e, ...), so it is undone
    exactly from the top: orig[m] = corrected[m] - sum(orig[m + k*e], k >= 1).
    Percentiles use wrk's rank rule."""
    flat = result["hist"]
    corrected = {int(flat[i]): int(flat[i + 1]) for i in range(0, len(flat), 2)}
    per_conn = result["requests"] // conns
    e = result["duration_us"] // per_conn if per_conn > 0 else 0
    orig: dict[int, int] = {}
    if e > 0:
        tail: dict[int, int] = {}  # m -> sum of orig[m + k*e] for k >= 1
        for m in sorted(corrected, reverse=True):
            up = m + e
            t = orig[up] + tail[up] if up in corrected else 0
            tail[m] = t
            orig[m] = corrected[m] - t if m > e else corrected[m]
    else:
        orig = dict(corrected)
    if any(c < 0 for c in orig.values()):
        raise Broken("undoing wrk's latency correction gave negative counts")
    hist = sorted((v, c) for v, c in orig.items() if c > 0)
    count = sum(c for _, c in hist)
    if count == 0:
        return {"mean": 0.0, "p50": 0, "p99": 0, "max": 0, "count": 0}

    def pct(p: float) -> int:
        rank = int(p / 100.0 * count + 0.5 + 0.5)  # C round() of x + 0.5, x >= 0
        total = 0
        for v, c in hist:
            total += c
            if total >= rank:
                return v
        return hist[-1][0]

    return {"mean": sum(v * c for v, c in hist) / count, "p50": pct(50), "p99": pct(99),
            "max": hist[-1][0], "count": count}


def run_wrk(url: str, conns: int, duration: int, close: bool, lua: str) -> dict:
    threads = 1 if conns < 2 else 2
    argv = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{duration}s", "--timeout", WRK_TIMEOUT, "-s", lua]
    if close:
        argv += ["-H", "Connection: close"]
    argv.append(url)
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=duration + 60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    result = None
    for line in out.splitlines():
        if line.startswith('{"requests"'):
            result = json.loads(line)
    if proc.returncode != 0 or result is None:
        raise Broken(f"wrk failed (status {proc.returncode}): {' '.join(argv)}\n{out}{err}")
    secs = result["duration_us"] / 1e6
    n = result["requests"]
    rps = n / secs if secs > 0 else 0.0
    lat = measured_latency(result, conns)
    recorded = n - result["errors"]["timeout"]
    if abs(lat["count"] - recorded) > max(2, recorded // 1000):
        say(f"  warning: {lat['count']} latencies after undoing wrk's correction, {recorded} requests")
    return {
        "rps": rps,
        "requests": n,
        "errors": sum(result["errors"].values()),
        "error_kinds": {k: v for k, v in result["errors"].items() if v},
        "mean_ms": lat["mean"] / 1000,
        "p50_ms": lat["p50"] / 1000,
        "p99_ms": lat["p99"] / 1000,
        "max_ms": lat["max"] / 1000,
        "wrk_p99_ms": result["wrk_latency_us"]["p99"] / 1000,
        "wrk_mean_ms": result["wrk_latency_us"]["mean"] / 1000,
        "eff_conc": rps * lat["mean"] / 1e6,
        "conns": conns,
    }


def describe_run(side: str, i: int, r: dict, width: int = 4) -> str:
    errs = f"  errors {r['errors']} {r['error_kinds']}" if r["errors"] else ""
    return (f"  {side:{width}} #{i}: {r['rps']:9.0f} req/s  p50 {r['p50_ms']:7.3f} ms  p99 {r['p99_ms']:7.3f} ms  "
            f"mean {r['mean_ms']:7.3f} ms  max {r['max_ms']:8.2f} ms  eff.conc {r['eff_conc']:5.1f}/{r['conns']}  "
            f"(wrk's corrected: mean {r['wrk_mean_ms']:.3f} ms, p99 {r['wrk_p99_ms']:.3f} ms){errs}")


class Scenario:
    """One wrk workload; runs per side: "ours", "base", then each compare
    side by name, in that order."""

    def __init__(self, key: str, label: str, path: str, conns: int, close: bool = False,
                 compare: tuple[str, ...] = ()):
        self.key, self.label, self.path, self.conns, self.close = key, label, path, conns, close
        self.sides = ("ours", "base", *compare)
        self.runs: dict[str, list[dict]] = {side: [] for side in self.sides}

    def best(self, side: str) -> dict | None:
        runs = self.runs[side]
        return max(runs, key=lambda r: r["rps"]) if runs else None


def scenarios_for(size: int, get_size: int, doc: dict, smoke: bool, compare: tuple[str, ...]) -> list[Scenario]:
    out = []
    if size == get_size:
        sid = doc["items"][0]["switch_id"]
        fields = doc["fields"]
        metric = "cpu_util_pct" if "cpu_util_pct" in fields else fields[0]
        path = f"/telemetry/GetMetric?switch_id={sid}&metric={metric}"
        tag = "" if size == 64 else f" ({size_label(size)})"
        for c in ((10,) if smoke else GET_CONNS):
            out.append(Scenario(f"get_c{c}", f"GetMetric keep-alive c{c}{tag}", path, c, compare=compare))
        c = 10 if smoke else CLOSE_CONNS
        out.append(Scenario(f"close_c{c}", f"GetMetric Connection: close c{c}{tag}", path, c, close=True,
                            compare=compare))
    out.append(Scenario(f"list_{size}", f"ListMetrics {size_label(size)} c{LIST_CONNS}",
                        "/telemetry/ListMetrics", LIST_CONNS, compare=compare))
    return out


def run_scenario(sc: Scenario, ms: Child, data: Child, ms_addr, bins, tmp, args, lua,
                 others: dict[str, tuple[Child, tuple]]) -> None:
    """wrk against ours, the baseline and each compare side (`others`: name
    -> (metrics_server, addr)), alternating, --rounds of each."""
    status, head, body = fetch(ms_addr, sc.path)
    if status != 200:
        raise Broken(f"{sc.path} answered {status}: {body[:200]!r}")
    for name, (cms, caddr) in others.items():
        cstatus, _, cbody = fetch(caddr, sc.path)
        if cstatus != 200:
            raise Broken(f"{name} ({cms.name}): {sc.path} answered {cstatus}: {cbody[:200]!r}")
    resp = os.path.join(tmp, f"response-{sc.key}.http")
    with open(resp, "wb") as f:
        f.write(head + body)
    base = Child(f"raw_baseline-{sc.key}", [bins["raw_baseline"], "--port", "0", "--response", resp],
                 tmp, env={})
    try:
        base_addr = base.wait_addr()
        sides = [("ours", ms_addr, (ms, data)), ("base", base_addr, (base,))]
        sides += [(name, caddr, (cms, data)) for name, (cms, caddr) in others.items()]
        width = max(len(side) for side, _, _ in sides)
        say(f"{sc.label}: {len(head) + len(body)}-byte answer; wrk -c{sc.conns}"
            f"{' -H Connection: close' if sc.close else ''}, {args.rounds} x {args.duration} s each side")
        for i in range(1, args.rounds + 1):
            for side, addr, procs in sides:
                check_alive(*procs)
                r = run_wrk(f"http://{addr[0]}:{addr[1]}{sc.path}", sc.conns, args.duration, sc.close, lua)
                check_alive(*procs)
                sc.runs[side].append(r)
                say(describe_run(side, i, r, width))
    finally:
        base.stop()


# --------------------------------------------------------------------------
# Keep-alive burst
# --------------------------------------------------------------------------

BURST_REQUEST = b"GET /health HTTP/1.1\r\nHost: bench\r\n\r\n"


def raise_nofile(wanted: int) -> tuple[int, int] | None:
    """Raises this process's RLIMIT_NOFILE soft limit to `wanted` (at most the
    hard limit); returns the old limits to put back, or None if unchanged."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        return soft, hard
    return None


def nofile_room(n: int) -> int:
    """Descriptors the burst needs: its sockets, and room for what is open."""
    return n + 256


def listen_overflows() -> int | None:
    """The host's TcpExt ListenOverflows counter (/proc/net/netstat): SYNs
    dropped because a listener's accept queue was full. Such a client's
    connect() completes only when its SYN is sent again, 1 s later."""
    try:
        with open("/proc/net/netstat", encoding="ascii") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for names, values in zip(lines[::2], lines[1::2]):
        if names.startswith("TcpExt:") and values.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:]))
            v = table.get("ListenOverflows")
            return int(v) if v is not None and v.isdigit() else None
    return None


class BurstConn:
    __slots__ = ("client", "sock", "connecting", "buf")

    def __init__(self, client: int, sock: socket.socket):
        self.client, self.sock, self.connecting, self.buf = client, sock, True, bytearray()


def parse_answer(buf: bytearray) -> tuple[int, int, bool] | None:
    """(status, bytes used, Connection: close?) of a complete answer at the
    start of buf, or None while incomplete; OSError when malformed."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        if len(buf) > 65536:
            raise OSError("head over 64 KiB")
        return None
    lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise OSError(f"bad status line {lines[0][:80]!r}")
    status, length, close = int(parts[1]), None, parts[0] == "HTTP/1.0"
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value.strip())
        elif name == "connection":
            tokens = [t.strip().lower() for t in value.split(",")]
            close = "close" in tokens or (close and "keep-alive" not in tokens)
    if length is None:
        if status in (204, 304) or 100 <= status < 200:
            length = 0
        else:
            raise OSError(f"answer {status} without Content-Length")
    used = end + 4 + length
    return (status, used, close) if len(buf) >= used else None


def keepalive_burst(addr: tuple[str, int], n: int, seconds: float) -> dict:
    """N clients open a connection each at once, then send keep-alive GET
    /health back to back for `seconds`, reconnecting when told to close (or
    cut off); one thread, non-blocking sockets, epoll. Returns when each
    client's first 200 arrived (seconds after the common start, None if
    never) and counts."""
    sel = selectors.DefaultSelector()
    first: list[float | None] = [None] * n
    connected: list[float | None] = [None] * n  # when each client's first connection was established
    counts = {"answers": 0, "reconnects": 0, "errors": 0}
    non200: dict[int, int] = {}
    error_kinds: dict[str, int] = {}
    retry: list[tuple[float, int]] = []  # (when, client): a failed connection's client starts over
    conns: dict[int, BurstConn] = {}

    def new_socket() -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    def drop(c: BurstConn) -> None:
        try:
            sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        c.sock.close()
        conns.pop(c.client, None)

    def fail(c: BurstConn, kind: str, now: float) -> None:
        counts["errors"] += 1
        error_kinds[kind] = error_kinds.get(kind, 0) + 1
        drop(c)
        retry.append((now + 0.01, c.client))

    def connect(client: int, s: socket.socket, now: float) -> None:
        c = BurstConn(client, s)
        conns[client] = c
        err = s.connect_ex(addr)
        if err not in (0, errno.EINPROGRESS):
            fail(c, f"connect: {errno.errorcode.get(err, err)}", now)
            return
        sel.register(s, selectors.EVENT_WRITE, c)

    def send(c: BurstConn, now: float) -> None:
        try:
            sent = c.sock.send(BURST_REQUEST)
        except OSError as e:
            fail(c, f"send: {errno.errorcode.get(e.errno, e)}", now)
            return
        if sent != len(BURST_REQUEST):
            fail(c, "send: short", now)

    socks = [new_socket() for _ in range(n)]  # before the start: not timed
    overflows_before = listen_overflows()
    t0 = time.monotonic()
    for client, s in enumerate(socks):
        connect(client, s, t0)
    end = t0 + seconds
    while True:
        now = time.monotonic()
        if now >= end:
            break
        if retry:
            due = [cl for when, cl in retry if when <= now]
            retry[:] = [(when, cl) for when, cl in retry if when > now]
            for cl in due:
                try:
                    connect(cl, new_socket(), now)
                except OSError as e:
                    counts["errors"] += 1
                    kind = f"socket: {errno.errorcode.get(e.errno, e)}"
                    error_kinds[kind] = error_kinds.get(kind, 0) + 1
                    retry.append((now + 0.01, cl))
        wait = min(end - now, 0.01 if retry else 0.05)
        for key, _mask in sel.select(max(wait, 0.0)):
            c: BurstConn = key.data
            now = time.monotonic()
            if c.connecting:
                err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    fail(c, f"connect: {errno.errorcode.get(err, err)}", now)
                    continue
                c.connecting = False
                if connected[c.client] is None:
                    connected[c.client] = now - t0
                sel.modify(c.sock, selectors.EVENT_READ, c)
                send(c, now)
                continue
            try:
                chunk = c.sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError as e:
                fail(c, f"recv: {errno.errorcode.get(e.errno, e)}", now)
                continue
            if not chunk:
                fail(c, "closed inside an answer" if c.buf else "closed unannounced", now)
                continue
            c.buf += chunk
            try:
                got = parse_answer(c.buf)
            except (OSError, ValueError) as e:
                fail(c, f"bad answer: {e}", now)
                continue
            if got is None:
                continue
            status, used, close = got
            if used != len(c.buf):
                fail(c, "bytes after the answer", now)
                continue
            c.buf.clear()
            counts["answers"] += 1
            if status == 200:
                if first[c.client] is None:
                    first[c.client] = now - t0
            else:
                non200[status] = non200.get(status, 0) + 1
            if close:
                counts["reconnects"] += 1
                drop(c)
                connect(c.client, new_socket(), now)
            else:
                send(c, now)
    elapsed = time.monotonic() - t0
    overflows_after = listen_overflows()
    for c in list(conns.values()):
        drop(c)
    sel.close()
    answered = sorted(t for t in first if t is not None)
    conn_times = [t for t in connected if t is not None]
    return {
        "clients": n,
        "within": sum(1 for t in answered if t <= BURST_WITHIN_S),
        "never": n - len(answered),
        "slowest_s": answered[-1] if answered else None,
        "median_s": statistics.median(answered) if answered else None,
        "slowest_connect_s": max(conn_times) if conn_times else None,
        "never_connected": n - len(conn_times),
        "listen_overflows": (overflows_after - overflows_before
                             if overflows_before is not None and overflows_after is not None else None),
        "answers": counts["answers"],
        "rps": counts["answers"] / elapsed if elapsed > 0 else 0.0,
        "reconnects": counts["reconnects"],
        "non200": non200,
        "errors": counts["errors"],
        "error_kinds": error_kinds,
    }


def burst_badness(r: dict) -> tuple:
    """Sorts the worst burst first: fewest answered in time, most never
    answered, slowest first answer."""
    return (r["within"], -r["never"], -(r["slowest_s"] or 0.0))


def fmt_secs(t: float | None) -> str:
    if t is None:
        return "-"
    return f"{t * 1000:.0f} ms" if t < 1.0 else f"{t:.2f} s"


def describe_burst(side: str, i: int, r: dict, width: int = 4) -> str:
    slowest = fmt_secs(r["slowest_s"]) + (f" ({r['never']} never answered)" if r["never"] else "")
    never_conn = f" ({r['never_connected']} never connected)" if r["never_connected"] else ""
    extra = ""
    if r["non200"]:
        extra += f"  non-200 {r['non200']}"
    if r["errors"]:
        extra += f"  errors {r['errors']} {r['error_kinds']}"
    return (f"  {side:{width}} #{i}: {r['within']}/{r['clients']} answered within {BURST_WITHIN_S:g} s  "
            f"slowest first answer {slowest}  median {fmt_secs(r['median_s'])}  "
            f"slowest connect {fmt_secs(r['slowest_connect_s'])}{never_conn}  "
            f"listen overflows {'-' if r['listen_overflows'] is None else r['listen_overflows']}  "
            f"{r['answers']} answers ({r['rps']:.0f}/s)  {r['reconnects']} reconnects  "
            f"RSS {(r.get('rss_kb') or 0) / 1024:.1f} MiB{extra}")


def run_bursts(sides: list[tuple[str, Child, tuple]], data: Child, n: int, rounds: int) -> dict[str, list[dict]]:
    """keepalive_burst against each side (name, metrics_server, addr) in
    turn, `rounds` times."""
    out: dict[str, list[dict]] = {name: [] for name, _, _ in sides}
    width = max(len(name) for name, _, _ in sides)
    say(f"keep-alive burst: {n} clients at once on /health, {BURST_S:g} s each, {rounds} x each side")
    old = raise_nofile(nofile_room(n))
    try:
        for i in range(1, rounds + 1):
            for name, ms, addr in sides:
                check_alive(ms, data)
                r = keepalive_burst(addr, n, BURST_S)
                check_alive(ms, data)
                r["rss_kb"] = vm_rss_kb(ms.pid)
                out[name].append(r)
                say(describe_burst(name, i, r, width))
                time.sleep(BURST_SETTLE_S)
    finally:
        if old is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, old)
    return out


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------

def fmt_rps(r):
    return f"{r['rps']:.0f}" if r else "-"


def fmt_lat(r):
    return f"{r['p50_ms']:.2f} / {r['p99_ms']:.2f}" if r else "-"


def fmt_conc(r):
    return f"{r['eff_conc']:.1f} / {r['conns']}" if r else "-"


def md_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), sep, *(line(r) for r in rows)])


def ratio_to(r, b) -> str:
    return f"{r['rps'] / b['rps']:.2f}" if r and b and b["rps"] > 0 else "-"


def results_table(scenarios: list[Scenario], compare: tuple[str, ...] = ()) -> str:
    header = ["scenario", "ours req/s", "base req/s", "ratio ours/base", "ours p50/p99 ms",
              "base p50/p99 ms", "ours eff.conc", "base eff.conc"]
    for name in compare:
        header += [f"{name} req/s", f"ratio {name}/base", f"{name} p50/p99 ms"]
    rows = []
    for sc in scenarios:
        o, b = sc.best("ours"), sc.best("base")
        row = [sc.label, fmt_rps(o), fmt_rps(b), ratio_to(o, b), fmt_lat(o), fmt_lat(b), fmt_conc(o), fmt_conc(b)]
        for name in compare:
            c = sc.best(name) if name in sc.runs else None
            row += [fmt_rps(c), ratio_to(c, b), fmt_lat(c)]
        rows.append(row)
    return md_table(header, rows)


def sizes_table(per_size: dict[int, dict[str, dict]]) -> str:
    """Poll cycle and RSS per size, a row per side (ours first)."""
    rows = []
    for size, sides in per_size.items():
        for side, s in sides.items():
            cyc = s["cycles"]
            cycle = f"{statistics.median(cyc):.2f} (max {max(cyc):.2f}, n={len(cyc)})" if cyc else "-"
            rss = f"{s['rss_kb'] / 1024:.1f}" if s.get("rss_kb") else "-"
            after = f"{s['rss_after_kb'] / 1024:.1f}" if s.get("rss_after_kb") else "-"
            rows.append([size_label(size), side, str(s["swaps"]), cycle, rss, after])
    return md_table(["switches", "side", "swaps seen", "poll cycle ms, median after swaps", "RSS MiB after swaps",
                     "RSS MiB after load"], rows)


def burst_table(bursts: dict[str, list[dict]]) -> str:
    """Each side's worst burst round."""
    rows = []
    for side, runs in bursts.items():
        if not runs:
            continue
        r = min(runs, key=burst_badness)
        slowest = fmt_secs(r["slowest_s"]) + (f" ({r['never']} never)" if r["never"] else "")
        errs = f"{r['errors']}" + (f" {r['error_kinds']}" if r["error_kinds"] else "")
        non200 = ", ".join(f"{k}: {v}" for k, v in sorted(r["non200"].items())) or "0"
        connect = fmt_secs(r["slowest_connect_s"]) + (f" ({r['never_connected']} never)"
                                                      if r["never_connected"] else "")
        overflows = "-" if r["listen_overflows"] is None else str(r["listen_overflows"])
        rss = f"{r['rss_kb'] / 1024:.1f}" if r.get("rss_kb") else "-"
        rows.append([side, f"{r['within']} / {r['clients']}", slowest, fmt_secs(r["median_s"]), connect,
                     overflows, f"{r['answers']} ({r['rps']:.0f}/s)", str(r["reconnects"]), non200, errs, rss])
    return md_table(["side", f"answered within {BURST_WITHIN_S:g} s", "slowest first answer",
                     "median first answer", "slowest connect", "listen overflows", "answers", "reconnects",
                     "non-200", "socket errors", "RSS MiB after"], rows)


def targets(scenarios: list[Scenario], per_size: dict[int, dict[str, dict]],
            bursts: dict[str, list[dict]] | None = None) -> list[str]:
    """The issue's targets, judged on ours only."""
    by_key = {sc.key: sc for sc in scenarios}
    out = []

    def pair(key):
        sc = by_key.get(key)
        if sc is None or not sc.runs["ours"] or not sc.runs["base"]:
            return None, None
        return sc.best("ours"), sc.best("base")

    def line(ok, what, detail):
        out.append(f"{'SKIP' if ok is None else 'PASS' if ok else 'FAIL'}  {what}: {detail}")

    o, b = pair(f"get_c{T_GET_CONNS}")
    if o:
        ratio = o["rps"] / b["rps"]
        p99 = max(o["p99_ms"], o["wrk_p99_ms"])  # measured, and as wrk prints it (corrected)
        line(ratio >= T_GET_RATIO and p99 <= T_GET_P99_MS,
             f"GetMetric keep-alive c{T_GET_CONNS} ratio >= {T_GET_RATIO} and ours p99 <= {T_GET_P99_MS:g} ms",
             f"ratio {ratio:.2f}, p99 {o['p99_ms']:.2f} ms measured, {o['wrk_p99_ms']:.2f} ms as wrk "
             "reports it (coordinated-omission corrected); both must pass")
    else:
        line(None, f"GetMetric keep-alive c{T_GET_CONNS}", "not measured")
    o, b = pair(f"close_c{CLOSE_CONNS}")
    if o:
        ratio = o["rps"] / b["rps"]
        line(ratio >= T_CLOSE_RATIO, f"GetMetric Connection: close c{CLOSE_CONNS} ratio >= {T_CLOSE_RATIO}",
             f"ratio {ratio:.2f}")
    else:
        line(None, f"GetMetric Connection: close c{CLOSE_CONNS}", "not measured")
    o, b = pair("list_64")
    if o:
        ratio = o["rps"] / b["rps"]
        line(ratio >= T_LIST64_RATIO, f"ListMetrics 64 ratio >= {T_LIST64_RATIO}", f"ratio {ratio:.2f}")
    else:
        line(None, "ListMetrics 64", "not measured")
    o, b = pair("list_100000")
    if o:
        x = o["mean_ms"] / b["mean_ms"] if b["mean_ms"] > 0 else float("inf")
        line(x <= T_LIST100K_MEAN, f"ListMetrics 100k ours mean latency <= {T_LIST100K_MEAN} x baseline's",
             f"{o['mean_ms']:.2f} ms vs {b['mean_ms']:.2f} ms = {x:.2f} x")
    else:
        line(None, "ListMetrics 100k", "not measured")
    for size, limit in T_POLL_MS.items():
        cyc = per_size.get(size, {}).get("ours", {}).get("cycles")
        if cyc:
            med = statistics.median(cyc)
            line(med <= limit, f"poll cycle {size_label(size)} <= {limit:g} ms (median)",
                 f"{med:.2f} ms (max {max(cyc):.2f})")
        else:
            line(None, f"poll cycle {size_label(size)}", "not measured")
    for size, limit in T_RSS_MB.items():
        rss = per_size.get(size, {}).get("ours", {}).get("rss_kb")
        if rss:
            line(rss / 1024 <= limit, f"RSS {size_label(size)} <= {limit:g} MB (after swaps)",
                 f"{rss / 1024:.1f} MiB")
        else:
            line(None, f"RSS {size_label(size)}", "not measured")
    runs = (bursts or {}).get("ours")
    if runs:
        r = min(runs, key=burst_badness)
        slowest = fmt_secs(r["slowest_s"]) + (f", {r['never']} never answered" if r["never"] else "")
        line(r["within"] == r["clients"],
             f"{r['clients']} simultaneous keep-alive clients all answered within {BURST_WITHIN_S:g} s",
             f"{r['within']}/{r['clients']} (worst of {len(runs)}), slowest first answer {slowest}")
    else:
        line(None, f"{BURST_CLIENTS} simultaneous keep-alive clients", "not measured")
    return out


def runs_listing(scenarios: list[Scenario], bursts: dict[str, list[dict]] | None = None) -> str:
    lines = []
    for sc in scenarios:
        lines.append(f"{sc.label}:")
        width = max(len(side) for side in sc.sides)
        n = max(len(runs) for runs in sc.runs.values())
        for i in range(n):
            for side in sc.sides:
                if i < len(sc.runs[side]):
                    lines.append(describe_run(side, i + 1, sc.runs[side][i], width))
    if bursts and any(bursts.values()):
        clients = next(runs[0]["clients"] for runs in bursts.values() if runs)
        lines.append(f"keep-alive burst, {clients} clients on /health for {BURST_S:g} s:")
        width = max(len(side) for side in bursts)
        n = max(len(runs) for runs in bursts.values())
        for i in range(n):
            for side, runs in bursts.items():
                if i < len(runs):
                    lines.append(describe_burst(side, i + 1, runs[i], width))
    return "\n".join(lines)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def git_rev() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return rev + (" (with uncommitted changes)" if dirty else "") if rev else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def knobs_of(startup: dict | None) -> str:
    return ", ".join(f"{k} {v}" for k, v in (startup or {}).items()
                     if k in ("workers", "max_connections", "keepalive_requests", "idle_timeout_ms"))


def write_markdown(path, args, wrk_version, started, load, startups, scenarios, per_size, bursts, target_lines,
                   problems) -> None:
    cmd = "python3 " + " ".join(shlex.quote(a) for a in sys.argv)
    compare = tuple(name for name, _ in args.compare)
    order = ", ".join(["ours", "baseline", *compare])
    cmp_lines = "".join(
        f"- {name}: metrics_server of `{bin_dir}` ({knobs_of(startups.get(name)) or 'knobs not logged'}), "
        "same flags and environment, polling the same data_server as ours.\n"
        for name, bin_dir in args.compare)
    burst_n = next((runs[0]["clients"] for runs in bursts.values() if runs), None)
    burst_md = ""
    if burst_n:
        k = max(len(r) for r in bursts.values())
        burst_md = f"""
## Keep-alive burst

{burst_n} clients open their connections to `/health` at once, then send `GET /health HTTP/1.1`
keep-alive requests back to back for {BURST_S:g} s (reconnecting when told `Connection: close`);
the time of each client's first 200 is taken from the common start. Each side's worst of
{k} round{'' if k == 1 else 's'} (see Every run). slowest connect: the last client's TCP
handshake done; listen overflows: the host's TcpExt ListenOverflows during the burst (SYNs
dropped on a full accept queue, retried by the client's kernel 1 s later).

{burst_table(bursts)}
"""
    text = f"""# Benchmarks

Written by `make bench` (`scripts/bench.py`; its docstring explains the method).

- date: {started.strftime('%Y-%m-%d %H:%M UTC')}
- command: `{cmd}`
- commit: {git_rev()}
- nproc: {os.cpu_count()}; CPU: {cpu_model()}
- {wrk_version}
- {args.rounds} rounds of {args.duration} s per side, alternating {order}, then again...;
  each side's best run (highest req/s) is shown, with that run's latencies.
- ours: metrics_server with default knobs ({knobs_of(startups.get('ours'))}) polling
  data_server every 500 ms, a new snapshot every second. base: `examples/raw_baseline`
  (a thread per connection, std only) answering the bytes metrics_server gave for the same URL.
{cmp_lines}- latencies are as measured per request (write of the request to end of the answer): wrk's
  coordinated-omission correction is undone (`measured_latency`); the Every run list also
  gives wrk's corrected mean and p99.
- eff.conc = req/s x mean latency: requests in flight on average, of wrk's connections.
  Below -c, connections sat idle: starved by the server, or (for the baseline on a small
  host) waiting for wrk itself, which shares the cores.
- load average (1 min) at start / end: {load[0]:.2f} / {load[1]:.2f}

{results_table(scenarios, compare)}

{sizes_table(per_size)}
{burst_md}
## Targets (issue 5, judged on ours)

```
{chr(10).join(target_lines)}
```
"""
    if problems:
        text += "\n## Problems\n\n" + "\n".join(f"- {p}" for p in problems) + "\n"
    text += f"\n## Every run\n\n```\n{runs_listing(scenarios, bursts)}\n```\n"
    text += kept_sections(path)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def kept_sections(path) -> str:
    """Every `<!-- NAME:begin -->` … `<!-- NAME:end -->` section of the file
    this run replaces: other scripts' figures (scripts/bench_gzip.py,
    scripts/bench_shards.py) and notes, which this run must not erase."""
    try:
        old = open(path, encoding="utf-8").read()
    except OSError:
        return ""
    found = re.findall(r"(<!-- ([\w.-]+):begin -->.*?<!-- \2:end -->)", old, re.S)
    return "".join(f"\n{section}\n" for section, _ in found)


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------

def execute(args, tmp: str) -> int:
    started = datetime.datetime.now(datetime.timezone.utc)
    load_start = os.getloadavg()[0]
    compare = tuple(name for name, _ in args.compare)
    burst_n = BURST_CLIENTS_SMOKE if args.smoke else BURST_CLIENTS
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < nofile_room(burst_n):
        raise SetupError(f"RLIMIT_NOFILE hard limit {hard} is too low for {burst_n} burst clients "
                         f"(needs {nofile_room(burst_n)}; raise it, e.g. ulimit -Hn)")
    wrk_version = ensure_wrk()
    bins = prepare_binaries(args, tmp)
    cmp_bins = prepare_compare(args.compare, tmp)
    lua = os.path.join(tmp, "report.lua")
    with open(lua, "w", encoding="utf-8") as f:
        f.write(LUA)

    get_size = 64 if 64 in args.sizes else min(args.sizes)
    scenarios: list[Scenario] = []
    per_size: dict[int, dict[str, dict]] = {}
    bursts: dict[str, list[dict]] = {}
    problems: list[str] = []
    startups: dict[str, dict | None] = {}
    for size in args.sizes:
        say(f"--- {size} switches")
        env = {"LOG_LEVEL": "warn"}
        started_here: list[Child] = []
        try:
            data = Child(f"producer_bench-{size}", [bins["producer_bench"], "--host", "127.0.0.1", "--port", "0",
                                                    "--switches", str(size), "--interval-sec", "1"], tmp, env)
            started_here.append(data)
            data_addr = data.wait_addr()
            upstream = f"http://{data_addr[0]}:{data_addr[1]}/counters"

            def consumer(name: str, binary: str) -> Child:
                c = Child(name, [binary, "--host", "127.0.0.1", "--port", "0", "--upstream-url", upstream,
                                 "--poll-ms", "500"], tmp, dict(env))
                started_here.append(c)
                return c

            ms = consumer(f"metrics_server-{size}", bins["metrics_server"])
            ms_addr = ms.wait_addr()
            startups.setdefault("ours", ms.startup)  # their knobs, for the markdown
            doc = wait_ready(ms, data, ms_addr, size)
            # Ours first, alone: its poll cycle and RSS are what the targets
            # judge, and other consumers parsing the same fabric on the same
            # cores would inflate its poll cycle. Compare sides are sampled
            # next, with ours running.
            want_swaps = 1 if args.smoke else MIN_SWAPS
            stats = watch_swaps([("ours", ms, ms_addr)], data, want_swaps)
            others_ms = {name: consumer(f"cmp-{name}-consumer-{size}", cmp_bins[name]["metrics_server"])
                         for name in compare}
            others = {name: (c, c.wait_addr()) for name, c in others_ms.items()}
            for name, (c, _) in others.items():
                startups.setdefault(name, c.startup)
            for name, (c, caddr) in others.items():
                wait_ready(c, data, caddr, size)  # the compare side serves the same fabric too
            sides = [("ours", ms, ms_addr), *((name, c, caddr) for name, (c, caddr) in others.items())]
            if others:
                stats.update(watch_swaps(sides[1:], data, want_swaps))
            per_size[size] = stats
            for name, st in stats.items():
                cyc = ", ".join(f"{c:.2f}" for c in st["cycles"]) or "none seen"
                say(f"{name}: {st['swaps']} swaps; poll cycles after swaps: {cyc} ms; "
                    f"RSS {(st['rss_kb'] or 0) / 1024:.1f} MiB")
            for sc in scenarios_for(size, get_size, doc, args.smoke, compare):
                scenarios.append(sc)
                run_scenario(sc, ms, data, ms_addr, bins, tmp, args, lua, others)
                for side in sc.sides:
                    for r in sc.runs[side]:
                        if r["errors"] > WRK_ERROR_LIMIT * max(r["requests"], 1):
                            problems.append(f"{sc.label}, {side}: {r['errors']} wrk errors in "
                                            f"{r['requests']} requests {r['error_kinds']}")
            for name, c, _ in sides:
                stats[name]["rss_after_kb"] = vm_rss_kb(c.pid)  # after wrk, before any burst
                check_alive(c)
            check_alive(data)
            if size == get_size:
                bursts = run_bursts(sides, data, burst_n, args.rounds)
        finally:
            for c in reversed(started_here):
                c.stop()

    table, sizes = results_table(scenarios, compare), sizes_table(per_size)
    target_lines = targets(scenarios, per_size, bursts)
    say("")
    say("Best run per side (highest req/s; measured latencies of that run). eff.conc = req/s x mean latency / -c.")
    say(table)
    say("")
    say(sizes)
    if bursts:
        say("")
        say(f"Keep-alive burst (each side's worst of {args.rounds} round{'' if args.rounds == 1 else 's'}):")
        say(burst_table(bursts))
    say("")
    say("Targets (issue 5, judged on ours)" + (": a --smoke run is short (maybe a debug build), so indicative only"
                                               if args.smoke else ""))
    for t in target_lines:
        say(t)
    for p in problems:
        say(f"PROBLEM: {p}")
    out = args.out or (None if args.smoke else os.path.join(REPO, "BENCHMARKS.md"))
    if out:
        load = (load_start, os.getloadavg()[0])
        write_markdown(out, args, wrk_version, started, load, startups, scenarios, per_size, bursts, target_lines,
                       problems)
        say(f"\nwrote {out}")
    return 1 if problems else 0


def main() -> int:
    ap = argparse.ArgumentParser(description="wrk against metrics_server and a raw std baseline, "
                                             "alternating (see the module docstring).")
    ap.add_argument("--no-build", action="store_true", help="use the binaries in --bin-dir as they are")
    ap.add_argument("--bin-dir", default="target/release",
                    help="data_server, metrics_server and examples/raw_baseline (default target/release)")
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)),
                    help="fabric sizes in switches, comma-separated (default 64,10000,100000)")
    ap.add_argument("--rounds", type=int, default=2, help="wrk runs per side and scenario (default 2)")
    ap.add_argument("--duration", type=int, default=5, help="seconds per wrk run (default 5)")
    ap.add_argument("--smoke", action="store_true",
                    help="64 switches, 1 round of 1 s, three scenarios and a 100-client burst; "
                         "no markdown unless --out is given")
    ap.add_argument("--out", metavar="PATH",
                    help="where the markdown goes (default BENCHMARKS.md in the repository root; "
                         "with --smoke, none unless given)")
    ap.add_argument("--compare", action="append", default=[], metavar="NAME=BINDIR",
                    help="also measure the metrics_server in BINDIR (another build), as side NAME; "
                         "repeatable")
    args = ap.parse_args()
    compare = []
    for spec in args.compare:
        name, sep, bin_dir = spec.partition("=")
        if not sep or not bin_dir:
            ap.error(f"--compare takes NAME=BINDIR, not {spec!r}")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,15}", name):
            ap.error(f"--compare name {name!r}: 1-16 letters, digits, _ . - (starting with a letter or digit)")
        if name in ("ours", "base", "baseline") or name in (n for n, _ in compare):
            ap.error(f"--compare name {name!r} is taken")
        if not os.path.isdir(bin_dir):
            ap.error(f"--compare {name}: no directory {bin_dir}")
        compare.append((name, os.path.abspath(bin_dir)))
    args.compare = compare
    try:
        args.sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        ap.error("--sizes takes comma-separated numbers")
    if not args.sizes or any(not 1 <= s <= 1_000_000 for s in args.sizes):
        ap.error("--sizes must be 1..1000000 switches each")
    if args.rounds < 1 or args.duration < 1:
        ap.error("--rounds and --duration must be at least 1")
    if args.smoke:
        args.sizes, args.rounds, args.duration = [64], 1, 1

    def on_signal(signum, _frame):
        raise Interrupted(signal.Signals(signum).name)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    atexit.register(stop_all)

    tmp = tempfile.mkdtemp(prefix="bench-")
    code = 2
    try:
        code = execute(args, tmp)
    except SetupError as e:
        print(f"bench: setup error: {e}", file=sys.stderr)
        code = 2
    except Broken as e:
        print(f"bench: broken: {e}", file=sys.stderr)
        code = 1
    except Interrupted as e:
        print(f"\nbench: interrupted ({e}); stopping everything", file=sys.stderr)
        code = 130
    except Exception:  # noqa: BLE001 - report, clean up, exit nonzero
        traceback.print_exc()
        code = 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        stop_all()
        if code == 0:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"bench: logs in {tmp}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
