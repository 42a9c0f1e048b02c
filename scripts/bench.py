#!/usr/bin/env python3
"""Throughput and latency of metrics_server next to a raw std baseline.

Usage: scripts/bench.py [--no-build] [--bin-dir DIR] [--sizes 64,10000,100000]
                        [--rounds 2] [--duration 5] [--smoke]

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
   alone.
2. For each fabric size (switches): data_server (--interval-sec 1, a new
   snapshot every second) and metrics_server (--poll-ms 500, LOG_LEVEL=warn)
   on port 0; each one's address comes from its NDJSON `startup` line. Once
   ListMetrics answers 200 with that many switches, /stats is sampled until
   the poller swapped in at least 3 new snapshots (poll.updated_200 grew by
   3): `poll_last_cycle_ms` is read right after each swap (when no other poll
   ran since the previous sample, so it is that swap's cycle), and the
   metrics_server's VmRSS after them is the size's RSS.
3. Per scenario, the exact answer metrics_server gives for its URL is
   captured on a raw socket (head, then Content-Length body bytes) into a
   file, and examples/raw_baseline serves those bytes for every request
   (adding `Connection: close` when asked to close): the baseline does no
   work beyond HTTP on std threads, so ours/base is what our stack costs.
   Then wrk runs against ours, the baseline, ours, the baseline... (--rounds
   of each, --duration seconds each): slow drift of a noisy host hits both.
   Both producer and consumer keep running (and polling) during the
   baseline's runs too.
4. The report takes each side's BEST run (highest req/s) and that same
   run's latencies: on a shared machine the worst runs measure neighbours,
   not us. Every run is printed as it finishes and listed in BENCHMARKS.md.
   Effective concurrency is req/s x mean latency (Little's law: requests in
   flight on average); well below wrk's -c means connections sat idle,
   i.e. some were starved (not accepted, or queued behind others).

Scenarios (GetMetric ones at 64 switches, or the smallest --sizes):
  GetMetric keep-alive at -c1, -c10, -c100; GetMetric with `Connection:
  close` at -c100; ListMetrics at every size with -c10 (see LIST_CONNS).
  --smoke: 64 switches, 1 round of 1 s, GetMetric keep-alive and close at
  -c10 and ListMetrics; no BENCHMARKS.md. `make test` style:
      python3 scripts/bench.py --smoke --no-build --bin-dir target/debug

Targets of the issue are printed as PASS/FAIL lines; they never decide the
exit status.

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
import json
import os
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

# The targets.
T_GET_RATIO, T_GET_P99_MS = 0.65, 3.0
T_CLOSE_RATIO = 0.8
T_LIST64_RATIO = 0.75
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
    raise SetupError(f"metrics_server served no {size}-switch snapshot in {READY_S:.0f} s ({last})")


def watch_swaps(ms: Child, data: Child, addr, want: int) -> dict:
    """Samples /stats until poll.updated_200 grew by `want`; returns the
    poll cycles seen right after swaps and VmRSS after them."""
    deadline = time.monotonic() + SWAPS_S
    first = prev = None
    cycles: list[float] = []
    while time.monotonic() < deadline:
        check_alive(ms, data)
        status, doc = get_json(addr, "/stats")
        if status != 200:
            raise Broken(f"/stats answered {status}")
        poll = doc["poll"]
        cur = (poll["updated_200"], poll["updated_200"] + poll["not_modified_304"] + poll["errors"])
        if first is None:
            first = cur
        elif cur[0] == prev[0] + 1 and cur[1] == prev[1] + 1 and doc.get("poll_last_cycle_ms") is not None:
            cycles.append(float(doc["poll_last_cycle_ms"]))  # the last poll was this swap
        prev = cur
        if cur[0] - first[0] >= want and len(cycles) >= want:
            break
        time.sleep(0.05)
    swaps = prev[0] - first[0]
    if swaps < want:
        say(f"  warning: only {swaps} snapshot swaps in {SWAPS_S:.0f} s")
    return {"swaps": swaps, "cycles": cycles, "rss_kb": vm_rss_kb(ms.pid)}


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


def describe_run(side: str, i: int, r: dict) -> str:
    errs = f"  errors {r['errors']} {r['error_kinds']}" if r["errors"] else ""
    return (f"  {side:4} #{i}: {r['rps']:9.0f} req/s  p50 {r['p50_ms']:7.3f} ms  p99 {r['p99_ms']:7.3f} ms  "
            f"mean {r['mean_ms']:7.3f} ms  max {r['max_ms']:8.2f} ms  eff.conc {r['eff_conc']:5.1f}/{r['conns']}  "
            f"(wrk's corrected: mean {r['wrk_mean_ms']:.3f} ms, p99 {r['wrk_p99_ms']:.3f} ms){errs}")


class Scenario:
    def __init__(self, key: str, label: str, path: str, conns: int, close: bool = False):
        self.key, self.label, self.path, self.conns, self.close = key, label, path, conns, close
        self.runs: dict[str, list[dict]] = {"ours": [], "base": []}

    def best(self, side: str) -> dict | None:
        runs = self.runs[side]
        return max(runs, key=lambda r: r["rps"]) if runs else None


def scenarios_for(size: int, get_size: int, doc: dict, smoke: bool) -> list[Scenario]:
    out = []
    if size == get_size:
        sid = doc["items"][0]["switch_id"]
        fields = doc["fields"]
        metric = "cpu_util_pct" if "cpu_util_pct" in fields else fields[0]
        path = f"/telemetry/GetMetric?switch_id={sid}&metric={metric}"
        tag = "" if size == 64 else f" ({size_label(size)})"
        for c in ((10,) if smoke else GET_CONNS):
            out.append(Scenario(f"get_c{c}", f"GetMetric keep-alive c{c}{tag}", path, c))
        c = 10 if smoke else CLOSE_CONNS
        out.append(Scenario(f"close_c{c}", f"GetMetric Connection: close c{c}{tag}", path, c, close=True))
    out.append(Scenario(f"list_{size}", f"ListMetrics {size_label(size)} c{LIST_CONNS}",
                        "/telemetry/ListMetrics", LIST_CONNS))
    return out


def run_scenario(sc: Scenario, ms: Child, data: Child, ms_addr, bins, tmp, args, lua) -> None:
    status, head, body = fetch(ms_addr, sc.path)
    if status != 200:
        raise Broken(f"{sc.path} answered {status}: {body[:200]!r}")
    resp = os.path.join(tmp, f"response-{sc.key}.http")
    with open(resp, "wb") as f:
        f.write(head + body)
    base = Child(f"raw_baseline-{sc.key}", [bins["raw_baseline"], "--port", "0", "--response", resp],
                 tmp, env={})
    try:
        base_addr = base.wait_addr()
        say(f"{sc.label}: {len(head) + len(body)}-byte answer; wrk -c{sc.conns}"
            f"{' -H Connection: close' if sc.close else ''}, {args.rounds} x {args.duration} s each side")
        for i in range(1, args.rounds + 1):
            for side, addr, procs in (("ours", ms_addr, (ms, data)), ("base", base_addr, (base,))):
                check_alive(*procs)
                r = run_wrk(f"http://{addr[0]}:{addr[1]}{sc.path}", sc.conns, args.duration, sc.close, lua)
                check_alive(*procs)
                sc.runs[side].append(r)
                say(describe_run(side, i, r))
    finally:
        base.stop()


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


def results_table(scenarios: list[Scenario]) -> str:
    rows = []
    for sc in scenarios:
        o, b = sc.best("ours"), sc.best("base")
        ratio = f"{o['rps'] / b['rps']:.2f}" if o and b and b["rps"] > 0 else "-"
        rows.append([sc.label, fmt_rps(o), fmt_rps(b), ratio, fmt_lat(o), fmt_lat(b), fmt_conc(o), fmt_conc(b)])
    return md_table(["scenario", "ours req/s", "base req/s", "ratio ours/base", "ours p50/p99 ms",
                     "base p50/p99 ms", "ours eff.conc", "base eff.conc"], rows)


def sizes_table(per_size: dict[int, dict]) -> str:
    rows = []
    for size, s in per_size.items():
        cyc = s["cycles"]
        cycle = f"{statistics.median(cyc):.2f} (max {max(cyc):.2f}, n={len(cyc)})" if cyc else "-"
        rss = f"{s['rss_kb'] / 1024:.1f}" if s.get("rss_kb") else "-"
        after = f"{s['rss_after_kb'] / 1024:.1f}" if s.get("rss_after_kb") else "-"
        rows.append([size_label(size), str(s["swaps"]), cycle, rss, after])
    return md_table(["switches", "swaps seen", "poll cycle ms, median after swaps", "RSS MiB after swaps",
                     "RSS MiB after load"], rows)


def targets(scenarios: list[Scenario], per_size: dict[int, dict]) -> list[str]:
    by_key = {sc.key: sc for sc in scenarios}
    out = []

    def pair(key):
        sc = by_key.get(key)
        if sc is None or not sc.runs["ours"] or not sc.runs["base"]:
            return None, None
        return sc.best("ours"), sc.best("base")

    def line(ok, what, detail):
        out.append(f"{'SKIP' if ok is None else 'PASS' if ok else 'FAIL'}  {what}: {detail}")

    o, b = pair(f"get_c{CLOSE_CONNS}")
    if o:
        ratio = o["rps"] / b["rps"]
        p99 = max(o["p99_ms"], o["wrk_p99_ms"])  # measured, and as wrk prints it (corrected)
        line(ratio >= T_GET_RATIO and p99 <= T_GET_P99_MS,
             f"GetMetric keep-alive c100 ratio >= {T_GET_RATIO} and ours p99 <= {T_GET_P99_MS} ms",
             f"ratio {ratio:.2f}, p99 {o['p99_ms']:.2f} ms measured, {o['wrk_p99_ms']:.2f} ms as wrk "
             "reports it (coordinated-omission corrected); both must pass")
    else:
        line(None, "GetMetric keep-alive c100", "not measured")
    o, b = pair(f"close_c{CLOSE_CONNS}")
    if o:
        ratio = o["rps"] / b["rps"]
        line(ratio >= T_CLOSE_RATIO, f"GetMetric Connection: close c100 ratio >= {T_CLOSE_RATIO}",
             f"ratio {ratio:.2f}")
    else:
        line(None, "GetMetric Connection: close c100", "not measured")
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
        cyc = per_size.get(size, {}).get("cycles")
        if cyc:
            med = statistics.median(cyc)
            line(med <= limit, f"poll cycle {size_label(size)} <= {limit:g} ms (median)",
                 f"{med:.2f} ms (max {max(cyc):.2f})")
        else:
            line(None, f"poll cycle {size_label(size)}", "not measured")
    for size, limit in T_RSS_MB.items():
        rss = per_size.get(size, {}).get("rss_kb")
        if rss:
            line(rss / 1024 <= limit, f"RSS {size_label(size)} <= {limit:g} MB (after swaps)",
                 f"{rss / 1024:.1f} MiB")
        else:
            line(None, f"RSS {size_label(size)}", "not measured")
    return out


def runs_listing(scenarios: list[Scenario]) -> str:
    lines = []
    for sc in scenarios:
        lines.append(f"{sc.label}:")
        n = max(len(sc.runs["ours"]), len(sc.runs["base"]))
        for i in range(n):
            for side in ("ours", "base"):
                if i < len(sc.runs[side]):
                    lines.append(describe_run(side, i + 1, sc.runs[side][i]))
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


def write_markdown(path, args, wrk_version, started, load, ms_startup, scenarios, per_size, target_lines,
                   problems) -> None:
    cmd = "python3 " + " ".join(shlex.quote(a) for a in sys.argv)
    knobs = ", ".join(f"{k} {v}" for k, v in (ms_startup or {}).items()
                      if k in ("workers", "max_connections", "keepalive_requests", "idle_timeout_ms"))
    text = f"""# Benchmarks

Written by `make bench` (`scripts/bench.py`; its docstring explains the method).

- date: {started.strftime('%Y-%m-%d %H:%M UTC')}
- command: `{cmd}`
- commit: {git_rev()}
- nproc: {os.cpu_count()}; CPU: {cpu_model()}
- {wrk_version}
- {args.rounds} rounds of {args.duration} s per side, alternating ours, baseline, ours, baseline...;
  each side's best run (highest req/s) is shown, with that run's latencies.
- ours: metrics_server with default knobs ({knobs}) polling
  data_server every 500 ms, a new snapshot every second. base: `examples/raw_baseline`
  (a thread per connection, std only) answering the bytes metrics_server gave for the same URL.
- latencies are as measured per request (write of the request to end of the answer): wrk's
  coordinated-omission correction is undone (`measured_latency`); the Every run list also
  gives wrk's corrected mean and p99.
- eff.conc = req/s x mean latency: requests in flight on average, of wrk's connections.
  Below -c, connections sat idle: starved by the server, or (for the baseline on a small
  host) waiting for wrk itself, which shares the cores.
- load average (1 min) at start / end: {load[0]:.2f} / {load[1]:.2f}

{results_table(scenarios)}

{sizes_table(per_size)}

## Targets (issue 5)

```
{chr(10).join(target_lines)}
```
"""
    if problems:
        text += "\n## Problems\n\n" + "\n".join(f"- {p}" for p in problems) + "\n"
    text += f"\n## Every run\n\n```\n{runs_listing(scenarios)}\n```\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------

def execute(args, tmp: str) -> int:
    started = datetime.datetime.now(datetime.timezone.utc)
    load_start = os.getloadavg()[0]
    wrk_version = ensure_wrk()
    bins = prepare_binaries(args, tmp)
    lua = os.path.join(tmp, "report.lua")
    with open(lua, "w", encoding="utf-8") as f:
        f.write(LUA)

    get_size = 64 if 64 in args.sizes else min(args.sizes)
    scenarios: list[Scenario] = []
    per_size: dict[int, dict] = {}
    problems: list[str] = []
    ms_startup: dict | None = None
    for size in args.sizes:
        say(f"--- {size} switches")
        env = {"LOG_LEVEL": "warn"}
        data = Child(f"producer_bench-{size}", [bins["producer_bench"], "--host", "127.0.0.1", "--port", "0",
                                                "--switches", str(size), "--interval-sec", "1"], tmp, env)
        data_addr = data.wait_addr()
        ms = Child(f"metrics_server-{size}", [bins["metrics_server"], "--host", "127.0.0.1", "--port", "0",
                                              "--upstream-url", f"http://{data_addr[0]}:{data_addr[1]}/counters",
                                              "--poll-ms", "500"], tmp, env)
        ms_addr = ms.wait_addr()
        ms_startup = ms_startup or ms.startup  # its knobs, for BENCHMARKS.md
        try:
            doc = wait_ready(ms, data, ms_addr, size)
            stats = watch_swaps(ms, data, ms_addr, 1 if args.smoke else MIN_SWAPS)
            per_size[size] = stats
            cyc = ", ".join(f"{c:.2f}" for c in stats["cycles"]) or "none seen"
            say(f"{stats['swaps']} swaps; poll cycles after swaps: {cyc} ms; "
                f"RSS {(stats['rss_kb'] or 0) / 1024:.1f} MiB")
            for sc in scenarios_for(size, get_size, doc, args.smoke):
                scenarios.append(sc)
                run_scenario(sc, ms, data, ms_addr, bins, tmp, args, lua)
                for side in ("ours", "base"):
                    for r in sc.runs[side]:
                        if r["errors"] > WRK_ERROR_LIMIT * max(r["requests"], 1):
                            problems.append(f"{sc.label}, {side}: {r['errors']} wrk errors in "
                                            f"{r['requests']} requests {r['error_kinds']}")
            stats["rss_after_kb"] = vm_rss_kb(ms.pid)
            check_alive(ms, data)
        finally:
            ms.stop()
            data.stop()

    table, sizes = results_table(scenarios), sizes_table(per_size)
    target_lines = targets(scenarios, per_size)
    say("")
    say("Best run per side (highest req/s; measured latencies of that run). eff.conc = req/s x mean latency / -c.")
    say(table)
    say("")
    say(sizes)
    say("")
    say("Targets (issue 5)" + (": a --smoke run is short (maybe a debug build), so indicative only"
                               if args.smoke else ""))
    for t in target_lines:
        say(t)
    for p in problems:
        say(f"PROBLEM: {p}")
    if not args.smoke:
        out = os.path.join(REPO, "BENCHMARKS.md")
        load = (load_start, os.getloadavg()[0])
        write_markdown(out, args, wrk_version, started, load, ms_startup, scenarios, per_size, target_lines,
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
                    help="64 switches, 1 round of 1 s, three scenarios, no BENCHMARKS.md")
    args = ap.parse_args()
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
