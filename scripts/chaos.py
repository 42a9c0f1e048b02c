#!/usr/bin/env python3
"""Chaos soak test for metrics_server: producer restarts, injected faults and
broken upstream data, under steady client load.

Usage: scripts/chaos.py [--duration SECONDS] [--bin-dir DIR] [--seed N]
       (defaults: 60 s, target/release, a random seed printed at the start)

Python 3.11 standard library only. Everything listens on 127.0.0.1.

Design
------
       controller thread (kills/restarts, switches proxy modes)
            |                  |
    data_server <-- recording proxy <-- metrics_server <-- client threads
    (fixed port)    (its UPSTREAM_URL)                     (keep-alive)

* Recording proxy (ThreadingHTTPServer on port 0, one request per
  connection, so every poll is a fresh connection). Modes:
    forward    relay GET /counters (with If-None-Match) to the live
               data_server and relay status, ETag, X-Snapshot-Ts and body;
               if data_server is down (or dies mid-request) close the
               connection without an answer, so the poller sees a
               transport/connect error;
    malformed  answer 200 with a fresh ETag, a fresh X-Snapshot-Ts and a
               broken CSV (ragged rows, NaN/inf, duplicate switch ids,
               garbage bytes, header only, ... varied);
    down       reset every connection without reading it.
  Every 200 relayed from a real data_server is recorded (ETag -> table) before
  it is passed on. Every failed poll it sees (a relayed status other than
  200/304, a dropped or reset connection, a malformed answer, an answer
  slower than the poller's timeout) is timestamped.
* Controller thread: runs data_server for 2-6 s, kills it (SIGKILL or SIGTERM
  at random) and restarts it on the same port, sometimes with a new --seed;
  sometimes it first puts the proxy in "malformed" or "down" for 1-3 s (each
  of these, and an immediate restart, within the first three cycles, so a
  15 s run sees all three). Every action is printed with a timestamp.
* metrics_server: started once, polling the proxy, with short breaker and
  staleness knobs (METRICS_ARGS below).
* Client threads: each keeps one http.client connection (reconnecting on
  errors) and requests a paced random mix of every endpoint; every answer is
  checked as it arrives.

Checks (each violation is counted; the first few are printed):
  a.  Availability: no data endpoint (/telemetry/*) answers 5xx while a fresh
      enough snapshot exists. A 503 is allowed only as "no snapshot yet"
      before the proxy relayed any snapshot, or as "data stale" with
      age_ms > max_stale_ms and no snapshot younger than max_stale_ms relayed
      to metrics_server beforehand. Any other 5xx, a timeout or a connection
      failure (on any endpoint) is a violation; so is a bad /health, /stats
      or /ready answer.
  a2. Staleness: no data endpoint answers 200 with age_ms > max_stale_ms.
  b.  Provenance: every 200 from ListMetrics/GetMetric names a snapshot_id
      whose ETag the proxy relayed from a real data_server (never a malformed
      one), with the values the proxy recorded for it (floats compared), the
      same fields, rows and row order, an ETag header naming it, and an
      age_ms that matches the producer's X-Snapshot-Ts (now minus it, per
      docs/API.md). A valid GetMetric answered 4xx is a violation too (it means
      a wrong table was served).
  c.  metrics_server never dies, and exits 0 on SIGTERM at the end.
  d.  VmRSS and Threads at the end (under load, before the clients stop) are
      within 10% of a sample taken after warm-up (from 20% of the run on,
      clients already running). Each sample is the median of five readings
      250 ms apart, so a worker thread being replaced at that instant does
      not decide it.
  e.  Recovery: after each restart of data_server into forward mode,
      metrics_server serves a snapshot of the new instance within
      2*POLL_MS + BREAKER_COOLDOWN_MS + FAULT_SLOW_MS, measured from the later
      of the restart and the last failed poll the proxy saw after it. An
      instance killed before it was served counts as a violation only if the
      bound had already elapsed.

A keep-alive connection that the server closed between two requests is
retried once on a fresh connection, as HTTP clients do for idempotent
requests (counted and reported); a failure on a fresh connection is not.

Clocks: every timestamp is wall-clock epoch ms (time.time()), the clock the
servers use for X-Snapshot-Ts and age_ms, so they compare directly.

Exit status: 0 every check passed; 1 a check failed (or the run was
interrupted); 2 usage or setup error (missing binary, a server that will not
start). Logs of every process go to a temporary directory, kept (and named in
the summary) when the run fails.
"""

from __future__ import annotations

import argparse
import atexit
import csv
import http.client
import io
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
from collections import Counter, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# --------------------------------------------------------------------------
# Knobs under test
# --------------------------------------------------------------------------

POLL_MS = 200
POLL_BACKOFF_MAX_MS = 1000
BREAKER_FAILURES = 5
BREAKER_COOLDOWN_MS = 1500
MAX_STALE_MS = 4000
UPSTREAM_TIMEOUT_MS = 3000

SWITCHES = 64
FAULT_500_PCT = 30
FAULT_SLOW_MS = 1500
INTERVAL_SEC = 1

METRICS_ARGS = [
    "--host", "127.0.0.1", "--port", "0",
    "--poll-ms", str(POLL_MS),
    "--poll-backoff-max-ms", str(POLL_BACKOFF_MAX_MS),
    "--breaker-failures", str(BREAKER_FAILURES),
    "--breaker-cooldown-ms", str(BREAKER_COOLDOWN_MS),
    "--max-stale-ms", str(MAX_STALE_MS),
    "--upstream-timeout-ms", str(UPSTREAM_TIMEOUT_MS),
]  # + --upstream-url <proxy>

DATA_ARGS = [
    "--host", "127.0.0.1",
    "--switches", str(SWITCHES),
    "--interval-sec", str(INTERVAL_SEC),
    "--fault-500-pct", str(FAULT_500_PCT),
    "--fault-slow-ms", str(FAULT_SLOW_MS),
]  # + --port P --seed S

# Check e: the longest a recovery may take.
RECOVERY_BOUND_MS = 2 * POLL_MS + BREAKER_COOLDOWN_MS + FAULT_SLOW_MS

# Client load: a few hundred requests per second in total.
CLIENTS = 6
TARGET_RPS = 200
CLIENT_TIMEOUT_S = 5.0
# Endpoint mix (weights). "unknown" = GetMetric for a switch or metric that
# does not exist (expects 404).
MIX = [("list", 25), ("get", 42), ("unknown", 3), ("stats", 10), ("health", 10), ("ready", 10)]
ENDPOINT_LABEL = {
    "list": "/telemetry/ListMetrics",
    "get": "/telemetry/GetMetric",
    "unknown": "/telemetry/GetMetric (unknown id)",
    "stats": "/stats",
    "health": "/health",
    "ready": "/ready",
}
METRICS = ["bandwidth_gbps", "latency_us", "packet_errors", "cpu_util_pct",
           "mem_util_pct", "buffer_occupancy_pct", "egress_drops_per_s", "temperature_c"]

# Time metrics_server may take between receiving a snapshot from the proxy
# and serving it (parse + swap of 64 rows takes well under 10 ms).
SWAP_SLACK_MS = 300
# Rounding slack when comparing ages in ms.
AGE_SLACK_MS = 5
# Check d tolerance.
RESOURCE_TOLERANCE = 0.10
WARMUP_FRACTION = 0.20
SAMPLE_READINGS = 5  # readings 250 ms apart behind each resource sample
# How many examples of each kind of violation are printed.
EXAMPLES = 3

CHECKS = {
    "a": "no data 5xx while a fresh snapshot existed; no connection failures",
    "a2": f"no data 200 older than max_stale_ms ({MAX_STALE_MS} ms)",
    "b": "every served snapshot was emitted by data_server, values equal",
    "c": "metrics_server never died, exits 0 on SIGTERM",
    "d": f"RSS and threads within {RESOURCE_TOLERANCE:.0%} of warm-up",
    "e": f"recovery within {RECOVERY_BOUND_MS} ms of each restart",
}

READY_ERRORS = {"no snapshot yet", "data stale", "upstream circuit open"}


def now_ms() -> float:
    return time.time() * 1000.0


def fmt_wall(t_ms: float) -> str:
    """A wall-clock time as in the servers' logs (UTC, ms)."""
    secs = int(t_ms // 1000)
    return time.strftime("%H:%M:%S", time.gmtime(secs)) + ".%03dZ" % int(t_ms % 1000)


def snapshot_id(etag: str | None) -> str | None:
    """An ETag without W/ and quotes, as metrics_server names snapshots."""
    if etag is None:
        return None
    tag = etag.strip()
    if tag.startswith("W/"):
        tag = tag[2:]
    if len(tag) >= 2 and tag[0] == '"' and tag[-1] == '"':
        tag = tag[1:-1]
    return tag


M64 = (1 << 64) - 1
P1, P2, P3, P4, P5 = (0x9E3779B185EBCA87, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9,
                      0x85EBCA77C2B2AE63, 0x27D4EB2F165667C5)


def xxh64(data: bytes, seed: int = 0) -> int:
    """XXH64, as metrics_server hashes a body for its snapshot id."""
    def rotl(x, r):
        return ((x << r) | (x >> (64 - r))) & M64

    def rnd(acc, lane):
        return (rotl((acc + lane * P2) & M64, 31) * P1) & M64

    n, i = len(data), 0
    if n >= 32:
        v = [(seed + P1 + P2) & M64, (seed + P2) & M64, seed, (seed - P1) & M64]
        while i + 32 <= n:
            for k in range(4):
                v[k] = rnd(v[k], int.from_bytes(data[i + 8 * k:i + 8 * k + 8], "little"))
            i += 32
        h = (rotl(v[0], 1) + rotl(v[1], 7) + rotl(v[2], 12) + rotl(v[3], 18)) & M64
        for lane in v:
            h = (((h ^ rnd(0, lane)) * P1) + P4) & M64
    else:
        h = (seed + P5) & M64
    h = (h + n) & M64
    while i + 8 <= n:
        h = ((rotl(h ^ rnd(0, int.from_bytes(data[i:i + 8], "little")), 27) * P1) + P4) & M64
        i += 8
    if i + 4 <= n:
        h = ((rotl(h ^ ((int.from_bytes(data[i:i + 4], "little") * P1) & M64), 23) * P2) + P3) & M64
        i += 4
    while i < n:
        h = (rotl(h ^ ((data[i] * P5) & M64), 11) * P1) & M64
        i += 1
    h = ((h ^ (h >> 33)) * P2) & M64
    h = ((h ^ (h >> 29)) * P3) & M64
    return h ^ (h >> 32)


def ours(tag: str | None, body: bytes) -> str:
    """metrics_server's snapshot id for `body` under upstream tag `tag`."""
    return f"{tag}-{xxh64(body):016x}" if tag else f"h-{xxh64(body):016x}"


def num_eq(json_value, csv_text: str) -> bool:
    """A JSON number equals the CSV's number (compared as floats)."""
    if isinstance(json_value, bool) or not isinstance(json_value, (int, float)):
        return False
    try:
        return float(json_value) == float(csv_text)
    except ValueError:
        return False


def proc_status(pid: int) -> dict | None:
    """VmRSS (kB) and Threads of a live process, from /proc/PID/status."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            out = {}
            for line in f:
                key, _, val = line.partition(":")
                if key == "VmRSS":
                    out["rss_kb"] = int(val.split()[0])
                elif key == "Threads":
                    out["threads"] = int(val.split()[0])
            return out if len(out) == 2 else None
    except OSError:
        return None


def median_sample(readings: list[dict]) -> dict:
    """Per-key median of a few /proc readings (t: the last reading's)."""
    out = {"t": readings[-1]["t"]}
    for key in ("rss_kb", "threads"):
        vals = sorted(r[key] for r in readings)
        out[key] = vals[len(vals) // 2]
    return out


class SetupError(Exception):
    """The harness could not do its job (exit 2)."""


class Interrupted(BaseException):
    """Ctrl-C, SIGTERM or SIGHUP arrived."""


# --------------------------------------------------------------------------
# Run-wide state: the clock origin, the action log, violations.
# --------------------------------------------------------------------------

class Run:
    def __init__(self, args, log_dir):
        self.args = args
        self.log_dir = log_dir
        self.t0 = now_ms()
        self.stop = threading.Event()
        self.lock = threading.Lock()
        # check -> kind -> first examples; counts per check and per (check, kind)
        self.violations: dict[str, dict[str, list]] = {k: {} for k in CHECKS}
        self.violation_counts = Counter()
        self.kind_counts = Counter()
        self.action_log = open(os.path.join(log_dir, "chaos.log"), "a", encoding="utf-8")
        self.fatal: str | None = None  # a harness failure in a thread

    def rel(self, t_ms: float) -> str:
        return "+%.3fs" % ((t_ms - self.t0) / 1000.0)

    def stamp(self, t_ms: float) -> str:
        return f"{fmt_wall(t_ms)} ({self.rel(t_ms)})"

    def action(self, msg: str) -> None:
        """Prints and logs one controller/harness action with its time."""
        line = f"[{self.stamp(now_ms())}] {msg}"
        with self.lock:
            print(line, flush=True)
            if not self.action_log.closed:
                self.action_log.write(line + "\n")
                self.action_log.flush()

    def violate(self, check: str, t_ms: float, kind: str, msg: str) -> None:
        """Counts a violation of `check`; keeps the first EXAMPLES examples
        of each kind, so one noisy kind does not hide another."""
        with self.lock:
            self.violation_counts[check] += 1
            self.kind_counts[(check, kind)] += 1
            examples = self.violations[check].setdefault(kind, [])
            if len(examples) < EXAMPLES:
                examples.append(f"{self.stamp(t_ms)} {msg}")
            if not self.action_log.closed:
                self.action_log.write(f"VIOLATION {check} [{kind}] {self.stamp(t_ms)} {msg}\n")


# --------------------------------------------------------------------------
# Child processes
# --------------------------------------------------------------------------

CHILDREN: list["Child"] = []  # everything ever started, for cleanup


class Child:
    """A started binary: NDJSON stdout parsed line by line (on_event gets
    each object with its arrival time), stderr kept; both copied to files."""

    def __init__(self, name: str, argv: list[str], log_dir: str, on_event=None):
        self.name = name
        self.argv = argv
        self.on_event = on_event
        self.startup: dict | None = None
        self.started = threading.Event()
        self.stdout_tail: deque[str] = deque(maxlen=30)
        self.stderr_tail: deque[str] = deque(maxlen=30)
        self._lock = threading.Lock()
        self._out = open(os.path.join(log_dir, f"{name}.ndjson"), "a", encoding="utf-8")
        self._err = open(os.path.join(log_dir, f"{name}.stderr"), "a", encoding="utf-8")
        try:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                # No knob leaks in from the caller's environment.
                env={"RUST_BACKTRACE": "1"},
                # Own session: a terminal's Ctrl-C reaches only us; we stop them.
                start_new_session=True,
            )
        except OSError as e:
            raise SetupError(f"cannot start {argv[0]}: {e}") from e
        CHILDREN.append(self)
        self.pid = self.proc.pid
        self.readers = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, True), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, False), daemon=True),
        ]
        for r in self.readers:
            r.start()

    def _pump(self, stream, is_stdout: bool) -> None:
        for raw in stream:
            t = now_ms()
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._lock:
                (self.stdout_tail if is_stdout else self.stderr_tail).append(line)
                (self._out if is_stdout else self._err).write(line + "\n")
            if not is_stdout:
                continue
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if not isinstance(ev, dict):
                continue
            if ev.get("event") == "startup" and self.startup is None:
                self.startup = ev
                self.started.set()
            if self.on_event is not None:
                self.on_event(ev, t)

    def wait_startup(self, timeout_s: float) -> str | None:
        """The bound address from the startup line; None if the process
        exited or the line did not come in time."""
        deadline = time.monotonic() + timeout_s
        while not self.started.wait(0.02):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                return None
        return str(self.startup.get("addr"))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass

    def wait(self, timeout_s: float) -> int | None:
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def close_logs(self) -> None:
        for r in self.readers:
            r.join(timeout=2)
        with self._lock:
            self._out.close()
            self._err.close()

    def describe_tail(self) -> str:
        with self._lock:
            out = list(self.stdout_tail)[-8:]
            err = list(self.stderr_tail)[-8:]
        return "last stdout:\n    " + "\n    ".join(out) + "\n  stderr:\n    " + "\n    ".join(err)


def cleanup_children() -> None:
    """Kills everything still running. Safe to call more than once."""
    for c in CHILDREN:
        if c.proc.poll() is None:
            try:
                c.proc.kill()
            except OSError:
                pass
            try:
                c.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                pass


# --------------------------------------------------------------------------
# Recording proxy
# --------------------------------------------------------------------------

class Table:
    """One snapshot as data_server sent it."""

    def __init__(self, header, order, rows, ts, gen, t_relay):
        self.header = header      # ["switch_id", field, ...]
        self.order = order        # switch ids in row order
        self.rows = rows          # switch_id -> [value text, ...]
        self.ts = ts              # X-Snapshot-Ts (epoch ms) or None
        self.gen = gen            # data_server instance that sent it
        self.t_relay = t_relay    # when the proxy first relayed it

    @staticmethod
    def parse(body: bytes):
        rows_iter = csv.reader(io.StringIO(body.decode("utf-8")))
        header = next(rows_iter)
        order, rows = [], {}
        for rec in rows_iter:
            if not rec:
                continue
            order.append(rec[0])
            rows[rec[0]] = rec[1:]
        return header, order, rows


class Proxy:
    """metrics_server's upstream: see the module docstring."""

    def __init__(self, run: Run, rng: random.Random):
        self.run = run
        self.rng = rng
        self.lock = threading.Lock()
        self.mode = "forward"
        self.upstream_port: int | None = None
        self.gen: int | None = None       # serving data_server instance; None while down
        self.tables: dict[str, Table] = {}
        self.malformed: dict[str, str] = {}  # etag -> kind of breakage
        self.relays: list[tuple[float, int]] = []  # (t delivered, X-Snapshot-Ts) per 200
        self.first_relay_t: float | None = None
        self.latest: Table | None = None
        self.failures: list[tuple[float, str]] = []
        self.outcomes = Counter()
        self.malformed_kinds = Counter()
        self.malformed_seq = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # one request per connection
            server_version = "chaos-proxy"

            def log_message(self, *args):  # quiet
                pass

            def handle(self):
                with proxy.lock:
                    mode = proxy.mode
                if mode == "down":
                    # Reset without reading: RST instead of FIN on close.
                    try:
                        self.connection.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    except OSError:
                        pass
                    proxy.failure("down")
                    self.close_connection = True
                    return
                super().handle()

            def do_GET(self):
                proxy.serve(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.1}, daemon=True)

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/counters"

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def set_mode(self, mode: str, gen: int | None = None) -> None:
        with self.lock:
            self.mode = mode
            if mode == "forward":
                self.gen = gen

    def set_down_instance(self) -> None:
        """data_server is about to die: stop attributing answers to it."""
        with self.lock:
            self.gen = None

    def failure(self, kind: str) -> None:
        with self.lock:
            self.failures.append((now_ms(), kind))
            self.outcomes[kind] += 1

    # -- what the client checks ask --------------------------------------
    def lookup(self, sid: str):
        """The table metrics_server's snapshot `sid` (<tag>-<xxh64 of the
        body>) names, or the malformed CSV it came from."""
        tag = sid.rsplit("-", 1)[0]
        with self.lock:
            return self.tables.get(sid), self.malformed.get(tag)

    def newest_ts_relayed_before(self, t_ms: float) -> int | None:
        best = None
        with self.lock:
            for t, ts in self.relays:
                if t > t_ms:
                    break
                if best is None or ts > best:
                    best = ts
        return best

    # -- serving ------------------------------------------------------------
    def serve(self, h: BaseHTTPRequestHandler) -> None:
        t_start = now_ms()
        if h.path.split("?")[0] != "/counters":
            h.send_error(404)
            return
        with self.lock:
            mode, port, gen = self.mode, self.upstream_port, self.gen
        if mode == "malformed":
            self.answer_malformed(h)
            return
        if mode == "down":  # switched between handle() and here
            self.failure("down")
            h.close_connection = True
            return
        if gen is None or port is None:
            self.failure("dropped (data_server down)")
            h.close_connection = True
            return
        headers = {}
        inm = h.headers.get("If-None-Match")
        if inm is not None:
            headers["If-None-Match"] = inm
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("GET", "/counters", headers=headers)
            resp = conn.getresponse()
            body = resp.read()
            status = resp.status
            etag = resp.getheader("ETag")
            xts = resp.getheader("X-Snapshot-Ts")
            ctype = resp.getheader("Content-Type")
        except (OSError, http.client.HTTPException):
            self.failure("dropped (data_server down)")
            h.close_connection = True
            return
        finally:
            conn.close()

        # Record the table before passing it on, so a client can never get it
        # from metrics_server before we know it.
        ts = self.record(etag, xts, body, gen) if status == 200 and etag is not None else None
        try:
            h.send_response(status)
            if etag is not None:
                h.send_header("ETag", etag)
            if xts is not None:
                h.send_header("X-Snapshot-Ts", xts)
            if ctype is not None:
                h.send_header("Content-Type", ctype)
            h.send_header("Cache-Control", "no-store")
            if status != 304:
                h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            if status != 304:
                h.wfile.write(body)
            h.wfile.flush()
        except OSError:
            self.failure("relay failed (poller gone)")
            return
        elapsed = now_ms() - t_start
        if elapsed >= UPSTREAM_TIMEOUT_MS - 20:
            # The poller gave up on this one (its timeout), whatever we sent.
            self.failure("too slow for the poller's timeout")
        elif status not in (200, 304):
            self.failure(f"relayed {status}")
        else:
            t = now_ms()
            with self.lock:
                self.outcomes[f"relayed {status}"] += 1
                # Evidence for check a: metrics_server has had this snapshot
                # (in full, in time) since t.
                if status == 200:
                    if ts is not None:
                        self.relays.append((t, ts))
                    if self.first_relay_t is None:
                        self.first_relay_t = t

    def record(self, etag: str, xts: str | None, body: bytes, gen: int) -> int | None:
        """Keeps ETag -> table (first time only); returns X-Snapshot-Ts."""
        sid = snapshot_id(etag)
        try:
            ts = int(xts) if xts is not None else None
        except ValueError:
            ts = None
        t = now_ms()
        with self.lock:
            if sid in self.tables:
                return ts
        try:
            header, order, rows = Table.parse(body)
        except (UnicodeDecodeError, StopIteration, csv.Error) as e:
            self.run.action(f"proxy: data_server #{gen} sent an unreadable CSV for {etag}: {e}")
            header, order, rows = [], [], {}
        table = Table(header, order, rows, ts, gen, t)
        with self.lock:
            self.tables.setdefault(sid, table)
            # Under metrics_server's name too: the tag and this very body.
            self.tables.setdefault(ours(sid, body), table)
            self.latest = table
        return ts

    def answer_malformed(self, h: BaseHTTPRequestHandler) -> None:
        with self.lock:
            self.malformed_seq += 1
            n = self.malformed_seq
            base = self.latest
            kind, body = malformed_csv(self.rng, base)
            etag = f'"chaos-malformed-{n}"'
            self.malformed[snapshot_id(etag)] = kind
            self.malformed_kinds[kind] += 1
        try:
            h.send_response(200)
            h.send_header("ETag", etag)
            h.send_header("X-Snapshot-Ts", str(int(now_ms())))
            h.send_header("Content-Type", "text/csv; charset=utf-8")
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
            h.wfile.flush()
        except OSError:
            pass
        self.failure("malformed")


def malformed_csv(rng: random.Random, base: Table | None) -> tuple[str, bytes]:
    """A CSV metrics_server must refuse, built from a recent real snapshot so
    that only one thing is wrong with it. Returns (kind, body)."""
    if base is not None and base.order:
        header = list(base.header)
        rows = [[sw] + list(base.rows[sw]) for sw in base.order]
    else:
        header = ["switch_id"] + METRICS
        rows = [[f"sw-{i:03d}"] + ["%.1f" % rng.uniform(0, 100) for _ in METRICS]
                for i in range(SWITCHES)]
    i = rng.randrange(len(rows))
    j = rng.randrange(1, len(header))
    # An empty value (null) and a header alone (a table with no rows) are
    # valid data, not malformed: docs/API.md, "Dialects".
    kind = rng.choice(["ragged-short", "ragged-long", "nan", "infinite", "not-a-number",
                       "no-metrics", "duplicate-switch", "empty-switch", "garbage-bytes",
                       "random-bytes", "empty-body", "bad-first-column",
                       "duplicate-column", "unterminated-quote"])
    if kind == "ragged-short":
        rows[i] = rows[i][:-1]
    elif kind == "ragged-long":
        rows[i] = rows[i] + ["1.0"]
    elif kind == "nan":
        rows[i][j] = rng.choice(["NaN", "nan", "-NaN"])
    elif kind == "infinite":
        rows[i][j] = rng.choice(["inf", "-inf", "Infinity", "1e999"])
    elif kind == "not-a-number":
        rows[i][j] = rng.choice(["abc", "12..5", "0x1F", "1,5", "--3"])
        if "," in rows[i][j]:
            rows[i][j] = '"' + rows[i][j] + '"'
    elif kind == "no-metrics":
        header = header[:1]
        rows = [r[:1] for r in rows]
    elif kind == "duplicate-switch":
        k = (i + 1 + rng.randrange(len(rows) - 1)) % len(rows) if len(rows) > 1 else i
        rows[k][0] = rows[i][0]
        if k == i:
            rows.append(list(rows[i]))
    elif kind == "empty-switch":
        rows[i][0] = ""
    elif kind == "bad-first-column":
        header[0] = rng.choice(["id", "switch", "switch id"])
    elif kind == "duplicate-column":
        header[j] = header[1 if j != 1 else 2] if len(header) > 2 else "switch_id"
    elif kind == "unterminated-quote":
        rows[i][j] = '"' + rows[i][j]
    text = "\n".join(",".join(r) for r in [header] + rows) + "\n"
    if kind == "empty-body":
        return kind, b""
    if kind == "random-bytes":
        return kind, bytes(rng.randrange(256) for _ in range(rng.randrange(1, 4096)))
    if kind == "garbage-bytes":
        # Inside a value, so the cell is never a number. (Bytes put between
        # fields could land at the start of a line and just make an odd but
        # legal switch id.)
        junk = rng.choice([b"\xff\xfe\x00\x01", b"\x00\x00\x00", b"\xc3\x28", b"\x1b[31m\x7f"])
        marker = "\x01GARBAGE\x01"
        cell = rows[i][j]
        cut = rng.randrange(len(cell) + 1)
        rows[i][j] = cell[:cut] + marker + cell[cut:]
        text = "\n".join(",".join(r) for r in [header] + rows) + "\n"
        return kind, text.encode().replace(marker.encode(), junk)
    return kind, text.encode()


# --------------------------------------------------------------------------
# Controller: data_server's life and death, proxy modes
# --------------------------------------------------------------------------

class Instance:
    def __init__(self, gen, child, seed):
        self.gen = gen
        self.child = child
        self.seed = seed
        self.t_ready: float | None = None   # up and the proxy forwarding to it
        self.t_kill: float | None = None
        self.kill_sig: str | None = None
        self.exit_code: int | None = None
        self.after: str = "initial" if gen == 1 else "restart"
        self.ticks = 0
        self.faults = Counter()


class Controller(threading.Thread):
    def __init__(self, run: Run, proxy: Proxy, bin_dir: str, rng: random.Random):
        super().__init__(name="controller", daemon=True)
        self.run_ = run
        self.proxy = proxy
        self.bin = os.path.join(bin_dir, "data_server")
        self.rng = rng
        self.deadline = run.t0 + run.args.duration * 1000.0  # no chaos after this
        self.port = 0            # learnt from the first instance, then fixed
        self.seed = None
        self.instances: list[Instance] = []
        self.current: Instance | None = None
        self.episodes = Counter()
        self.episode_s = Counter()
        self.kills = Counter()
        self.etag_gen: dict[str, int] = {}  # snapshot ids data_server logged -> instance
        self.lock = threading.Lock()

    def run(self) -> None:
        try:
            self.loop()
        except Exception:  # a harness failure: stop the run, exit 2
            self.run_.fatal = "controller: " + traceback.format_exc()
            self.run_.stop.set()

    def loop(self) -> None:
        """Until the end of the run: let data_server live 2-6 s, kill it,
        maybe hold the proxy in an episode, restart it. The first three
        cycles do a "malformed" episode, a "down" episode and an immediate
        restart in a random order, so that even a short run sees each once;
        after that 20% malformed, 20% down, 60% immediate."""
        stop = self.run_.stop
        first = ["malformed", "down", None]
        self.rng.shuffle(first)
        while not stop.is_set():
            life = self.rng.uniform(2.0, 6.0)
            if stop.wait(life) or now_ms() >= self.deadline:
                break
            self.kill_current()
            if first:
                mode = first.pop()
            else:
                r = self.rng.random()
                mode = "malformed" if r < 0.2 else "down" if r < 0.4 else None
            if mode is not None:
                self.episode(mode)
            if stop.is_set() or now_ms() >= self.deadline:
                break
            self.start_instance()

    def episode(self, mode: str) -> None:
        secs = self.rng.uniform(1.0, 3.0)
        self.episodes[mode] += 1
        self.episode_s[mode] += secs
        self.proxy.set_mode(mode)
        self.run_.action(f"proxy -> {mode} for {secs:.1f} s")
        self.run_.stop.wait(secs)

    def start_instance(self) -> None:
        gen = len(self.instances) + 1
        if self.seed is None or self.rng.random() < 0.3:
            self.seed = self.rng.randrange(1, 2**31)
        argv = [self.bin] + DATA_ARGS + ["--port", str(self.port), "--seed", str(self.seed)]
        t_begin = now_ms()
        # The port was just freed; if something else grabbed it (or the kernel
        # is slow to let go), retry for a bounded time.
        for attempt in range(25):
            inst = Instance(gen, None, self.seed)
            child = Child(f"data_server-{gen}", argv, self.run_.log_dir,
                          on_event=lambda ev, t, inst=inst: self.on_data_event(inst, ev))
            inst.child = child
            addr = child.wait_startup(10)
            if addr is not None:
                break
            child.signal(signal.SIGKILL)
            rc = child.wait(5)
            child.close_logs()
            self.run_.action(f"data_server #{gen} failed to start (exit {rc}), retrying: "
                             + " | ".join(list(child.stderr_tail)[-2:]))
            if self.run_.stop.wait(0.2):
                return
        else:
            raise SetupError(f"data_server would not start on port {self.port}")
        port = int(addr.rsplit(":", 1)[1])
        if self.port == 0:
            self.port = port
        with self.proxy.lock:
            self.proxy.upstream_port = port
        self.proxy.set_mode("forward", gen)
        inst.t_ready = now_ms()
        with self.lock:
            self.instances.append(inst)
            self.current = inst
        self.run_.action(f"start data_server #{gen} pid {child.pid} on {addr} seed {self.seed} "
                         f"(up in {inst.t_ready - t_begin:.0f} ms); proxy -> forward")

    def on_data_event(self, inst: Instance, ev: dict) -> None:
        e = ev.get("event")
        if e == "gen.tick":
            sid = ev.get("snapshot_id")
            if isinstance(sid, str):
                with self.lock:
                    self.etag_gen[sid] = inst.gen
            inst.ticks += 1
        elif e == "gen.inject_fault":
            inst.faults[str(ev.get("kind"))] += 1

    def kill_current(self) -> None:
        inst = self.current
        if inst is None:
            return
        self.current = None
        self.proxy.set_down_instance()
        sig = self.rng.choice([signal.SIGKILL, signal.SIGTERM])
        inst.kill_sig = sig.name
        self.kills[sig.name] += 1
        inst.t_kill = now_ms()
        inst.child.signal(sig)
        rc = inst.child.wait(8 if sig == signal.SIGTERM else 3)
        if rc is None:
            self.run_.action(f"data_server #{inst.gen} ignored {sig.name} for 8 s; SIGKILL")
            inst.child.signal(signal.SIGKILL)
            rc = inst.child.wait(3)
        inst.exit_code = rc
        inst.child.close_logs()
        lived = (inst.t_kill - inst.t_ready) / 1000.0
        self.run_.action(f"kill data_server #{inst.gen} pid {inst.child.pid} with {sig.name} "
                         f"after {lived:.1f} s -> exit {rc}")

    def stop_last(self) -> None:
        """End of run: stop the last instance gracefully (not a chaos kill)."""
        inst = self.current
        if inst is None:
            return
        inst.t_kill = now_ms()
        self.proxy.set_down_instance()
        inst.child.signal(signal.SIGTERM)
        if inst.child.wait(8) is None:
            inst.child.signal(signal.SIGKILL)
            inst.child.wait(3)
        inst.exit_code = inst.child.proc.returncode
        inst.child.close_logs()


# --------------------------------------------------------------------------
# Clients
# --------------------------------------------------------------------------

class Clients:
    """CLIENTS threads, each with one keep-alive connection, checking every
    answer as it arrives."""

    def __init__(self, run: Run, proxy: Proxy, port: int, seed: int):
        self.run = run
        self.proxy = proxy
        self.port = port
        self.seed = seed
        self.lock = threading.Lock()
        self.counts = Counter()          # (endpoint label, status or "conn-error")
        self.keepalive_retries = 0
        self.reasons_5xx = Counter()     # (status, endpoint group, error) of every 5xx
        self.first_seen: dict[str, float] = {}  # snapshot id -> first time a client got it
        self.first_200_t: float | None = None
        self.threads = [threading.Thread(target=self.loop, args=(i,), name=f"client-{i}",
                                         daemon=True) for i in range(CLIENTS)]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def join(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for t in self.threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))

    def loop(self, idx: int) -> None:
        rng = random.Random(self.seed * 1000 + idx)
        kinds = [k for k, _ in MIX]
        weights = [w for _, w in MIX]
        conn = [None]
        period = CLIENTS / TARGET_RPS
        next_t = time.monotonic()
        try:
            while not self.run.stop.is_set():
                kind = rng.choices(kinds, weights)[0]
                try:
                    self.one(conn, kind, rng)
                except Exception:  # a bug in the checks must not pass silently
                    self.run.fatal = f"client-{idx}: " + traceback.format_exc()
                    self.run.stop.set()
                    return
                next_t += period
                delay = next_t - time.monotonic()
                if delay > 0:
                    self.run.stop.wait(delay)
                elif delay < -1.0:  # fell far behind: do not burst to catch up
                    next_t = time.monotonic()
        finally:
            if conn[0] is not None:
                conn[0].close()

    def fetch(self, conn: list, path: str):
        """GET path on the thread's connection. Returns (status, headers,
        body, t_sent, t_recv, error)."""
        for attempt in (0, 1):
            if conn[0] is None:
                conn[0] = http.client.HTTPConnection("127.0.0.1", self.port, timeout=CLIENT_TIMEOUT_S)
            c = conn[0]
            fresh = c.sock is None
            t_sent = now_ms()
            try:
                c.request("GET", path)
                resp = c.getresponse()
                body = resp.read()
                return resp.status, resp.headers, body, t_sent, now_ms(), None
            except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError) as e:
                # (http.client.RemoteDisconnected is a ConnectionResetError.)
                c.close()
                if not fresh and attempt == 0:
                    with self.lock:
                        self.keepalive_retries += 1
                    continue
                return None, None, None, t_sent, now_ms(), f"{type(e).__name__}: {e}"
            except (OSError, http.client.HTTPException) as e:
                c.close()
                return None, None, None, t_sent, now_ms(), f"{type(e).__name__}: {e}"
        raise AssertionError("unreachable")

    def one(self, conn: list, kind: str, rng: random.Random) -> None:
        if kind == "list":
            path = "/telemetry/ListMetrics"
            params = None
        elif kind in ("get", "unknown"):
            sw = f"sw-{rng.randrange(SWITCHES):03d}"
            metric = rng.choice(METRICS)
            if kind == "unknown":
                if rng.random() < 0.5:
                    sw = f"sw-{rng.randrange(SWITCHES, 1000):03d}"
                else:
                    metric = rng.choice(["nope", "cpu", "CPU_UTIL_PCT"])
            params = (sw, metric)
            path = "/telemetry/GetMetric?" + urllib.parse.urlencode(
                {"switch_id": sw, "metric": metric})
        else:
            path = "/" + kind
            params = None
        status, headers, body, t_sent, t_recv, err = self.fetch(conn, path)
        label = ENDPOINT_LABEL[kind]
        with self.lock:
            self.counts[(label, status if status is not None else "conn-error")] += 1
        if err is not None:
            self.run.violate("a", t_sent, "no answer", f"GET {path}: no answer from metrics_server ({err})")
            return
        doc = None
        try:
            doc = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            pass
        if not isinstance(doc, dict):
            self.run.violate("a", t_sent, "body not JSON", f"GET {path} -> {status}: body is not a JSON object: "
                             f"{body[:120]!r}")
            return
        if status >= 500:
            group = "data" if kind in ("list", "get", "unknown") else ENDPOINT_LABEL[kind]
            with self.lock:
                self.reasons_5xx[(status, group, str(doc.get("error")))] += 1
        if kind in ("list", "get", "unknown"):
            self.check_data(kind, path, params, status, headers, doc, t_sent, t_recv)
        elif kind == "health":
            if status != 200 or doc.get("ok") is not True:
                self.run.violate("a", t_sent, "/health not ok", f"GET /health -> {status} {doc}")
        elif kind == "stats":
            if status != 200 or not isinstance(doc.get("endpoints"), dict):
                self.run.violate("a", t_sent, "/stats not ok", f"GET /stats -> {status} {str(doc)[:160]}")
        elif kind == "ready":
            self.check_ready(status, doc, t_sent)

    # -- checks a, a2, b ----------------------------------------------------
    def check_data(self, kind, path, params, status, headers, doc, t_sent, t_recv) -> None:
        run = self.run
        if status >= 500:
            self.check_5xx(path, status, doc, t_sent, t_recv)
            return
        if kind == "unknown":
            if status != 404:
                run.violate("b", t_sent, "unknown id not 404", f"GET {path} -> {status} (expected 404): {str(doc)[:160]}")
            return
        if status != 200:
            run.violate("b", t_sent, "valid GetMetric not 200", f"GET {path} -> {status} for a switch and metric that "
                        f"exist: {str(doc)[:160]}")
            return
        sid = doc.get("snapshot_id")
        if not isinstance(sid, str):
            run.violate("b", t_sent, "no snapshot_id", f"GET {path} -> 200 without a snapshot_id")
            return
        with self.lock:
            if sid not in self.first_seen:
                self.first_seen[sid] = t_recv
            if self.first_200_t is None:
                self.first_200_t = t_recv
        table, broken = self.proxy.lookup(sid)
        if broken is not None:
            run.violate("b", t_sent, "malformed snapshot served", f"GET {path} served snapshot {sid}, a malformed CSV "
                        f"({broken}) the proxy injected")
            return
        if table is None:
            run.violate("b", t_sent, "snapshot never relayed", f"GET {path} served snapshot {sid}, which the proxy never "
                        f"relayed from data_server")
            return
        if headers.get("ETag") != f'"{sid}"':
            run.violate("b", t_sent, "ETag header mismatch", f"GET {path}: ETag header {headers.get('ETag')!r} does not "
                        f"name snapshot {sid}")
        age = doc.get("age_ms")
        if not isinstance(age, int) or isinstance(age, bool):
            run.violate("b", t_sent, "age_ms not an integer", f"GET {path}: age_ms {age!r} is not an integer")
        else:
            if age > MAX_STALE_MS:
                run.violate("a2", t_sent, "stale 200", f"GET {path} -> 200 with age_ms {age} > max_stale_ms "
                            f"{MAX_STALE_MS} (snapshot {sid})")
            if table.ts is not None:
                lo = max(0.0, t_sent - table.ts) - AGE_SLACK_MS
                hi = max(0.0, t_recv - table.ts) + AGE_SLACK_MS
                if not lo <= age <= hi:
                    run.violate("b", t_sent, "age_ms inconsistent with X-Snapshot-Ts", f"GET {path}: age_ms {age} but snapshot {sid} "
                                f"(X-Snapshot-Ts {table.ts}) was {lo + AGE_SLACK_MS:.0f}.."
                                f"{hi - AGE_SLACK_MS:.0f} ms old during the request")
        fields = table.header[1:]
        if kind == "list":
            self.check_list(path, doc, sid, table, fields, t_sent)
        else:
            self.check_get(path, doc, sid, table, fields, params, t_sent)

    def check_list(self, path, doc, sid, table, fields, t_sent) -> None:
        run = self.run
        if doc.get("fields") != fields:
            run.violate("b", t_sent, "fields differ", f"ListMetrics {sid}: fields {doc.get('fields')} != CSV "
                        f"header {fields}")
            return
        items = doc.get("items")
        if not isinstance(items, list) or len(items) != len(table.order):
            n = len(items) if isinstance(items, list) else items
            run.violate("b", t_sent, "item count differs", f"ListMetrics {sid}: {n} items, the CSV had "
                        f"{len(table.order)} rows")
            return
        for item, sw in zip(items, table.order):
            if not isinstance(item, dict) or item.get("switch_id") != sw:
                got = item.get("switch_id") if isinstance(item, dict) else item
                run.violate("b", t_sent, "row order differs", f"ListMetrics {sid}: item {got!r} where the CSV has "
                            f"{sw!r} (row order)")
                return
            if list(item.keys()) != ["switch_id"] + fields:
                run.violate("b", t_sent, "item keys differ", f"ListMetrics {sid}: {sw} has keys {list(item.keys())}")
                return
            for f, v in zip(fields, table.rows[sw]):
                if not num_eq(item[f], v):
                    run.violate("b", t_sent, "value differs", f"ListMetrics {sid}: {sw}.{f} = {item[f]!r}, "
                                f"the CSV said {v!r}")
                    return

    def check_get(self, path, doc, sid, table, fields, params, t_sent) -> None:
        run = self.run
        sw, metric = params
        if doc.get("switch_id") != sw or doc.get("metric") != metric:
            run.violate("b", t_sent, "wrong switch/metric answered", f"GET {path}: answered for {doc.get('switch_id')!r}/"
                        f"{doc.get('metric')!r}")
            return
        if sw not in table.rows or metric not in fields:
            run.violate("b", t_sent, "switch/metric missing", f"GET {path} -> 200 but snapshot {sid} has no {sw}/{metric}")
            return
        want = table.rows[sw][fields.index(metric)]
        if not num_eq(doc.get("value"), want):
            run.violate("b", t_sent, "value differs", f"GET {path}: value {doc.get('value')!r} in snapshot {sid}, "
                        f"the CSV said {want!r}")

    def check_5xx(self, path, status, doc, t_sent, t_recv) -> None:
        """Check a: a data 5xx is allowed only as an honest 503."""
        run = self.run
        err = doc.get("error")
        if status != 503:
            run.violate("a", t_sent, "5xx other than 503", f"GET {path} -> {status} {str(doc)[:160]}")
            return
        if err == "no snapshot yet":
            first = self.proxy.first_relay_t
            if first is not None and first < t_sent - SWAP_SLACK_MS:
                run.violate("a", t_sent, "'no snapshot yet' after a snapshot", f"GET {path} -> 503 no snapshot yet, but the proxy "
                            f"relayed one at {fmt_wall(first)}")
            return
        if err == "data stale":
            age, mx = doc.get("age_ms"), doc.get("max_stale_ms")
            if not isinstance(age, int) or age <= MAX_STALE_MS or mx != MAX_STALE_MS:
                run.violate("a", t_sent, "'data stale' below max_stale_ms", f"GET {path} -> 503 {doc} (needs age_ms > "
                            f"max_stale_ms = {MAX_STALE_MS})")
                return
            fresh = self.proxy.newest_ts_relayed_before(t_sent - SWAP_SLACK_MS)
            if fresh is not None and t_recv - fresh < MAX_STALE_MS - AGE_SLACK_MS:
                run.violate("a", t_sent, "'data stale' with a fresh snapshot", f"GET {path} -> 503 data stale age_ms {age}, but a "
                            f"snapshot with X-Snapshot-Ts {fresh} ({t_recv - fresh:.0f} ms old) "
                            f"had been relayed >= {SWAP_SLACK_MS} ms before")
            return
        run.violate("a", t_sent, "503 with another error", f"GET {path} -> 503 {str(doc)[:160]}")

    def check_ready(self, status, doc, t_sent) -> None:
        run = self.run
        if status == 200:
            if doc.get("ready") is not True or not isinstance(doc.get("age_ms"), int):
                run.violate("a", t_sent, "/ready 200 malformed", f"GET /ready -> 200 {str(doc)[:160]}")
        elif status == 503:
            err = doc.get("error")
            if doc.get("ready") is not False or err not in READY_ERRORS:
                run.violate("a", t_sent, "/ready 503 malformed", f"GET /ready -> 503 {str(doc)[:160]}")
            elif err == "no snapshot yet":
                first = self.proxy.first_relay_t
                if first is not None and first < t_sent - SWAP_SLACK_MS:
                    run.violate("a", t_sent, "/ready 'no snapshot yet' after a snapshot", f"GET /ready -> 503 no snapshot yet, but the proxy "
                                f"relayed one at {fmt_wall(first)}")
        else:
            run.violate("a", t_sent, "/ready other status", f"GET /ready -> {status} {str(doc)[:160]}")


# --------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------

class MetricsLog:
    """What metrics_server's NDJSON says about its poller."""

    def __init__(self):
        self.lock = threading.Lock()
        self.events = Counter()
        self.errors = Counter()
        self.breaker = Counter()
        self.breaker_first: list[str] = []
        self.shutdown = None

    def on_event(self, ev: dict, t: float) -> None:
        e = ev.get("event")
        with self.lock:
            self.events[e] += 1
            if e == "poll.error":
                self.errors[str(ev.get("kind"))] += 1
            elif e == "poll.breaker":
                tr = f"{ev.get('from')}->{ev.get('to')}"
                self.breaker[tr] += 1
            elif e == "shutdown":
                self.shutdown = ev


def execute(run: Run) -> int:
    args = run.args
    rng = random.Random(args.seed)
    bin_dir = args.bin_dir
    proxy = Proxy(run, random.Random(rng.randrange(2**32)))
    ctl = Controller(run, proxy, bin_dir, random.Random(rng.randrange(2**32)))
    mlog = MetricsLog()

    run.action(f"chaos: duration {args.duration:g} s, seed {args.seed}, bins {bin_dir}, "
               f"logs {run.log_dir} (kept if the run fails)")
    proxy.start()
    run.action(f"proxy listening on 127.0.0.1:{proxy.port}")
    try:
        ctl.start_instance()
    except SetupError:
        raise
    argv = [os.path.join(bin_dir, "metrics_server")] + METRICS_ARGS + ["--upstream-url", proxy.url()]
    ms = Child("metrics_server", argv, run.log_dir, on_event=mlog.on_event)
    addr = ms.wait_startup(15)
    if addr is None:
        rc = ms.wait(2)
        raise SetupError(f"metrics_server did not start (exit {rc}): {' '.join(argv)}\n  "
                         + ms.describe_tail())
    ms_port = int(addr.rsplit(":", 1)[1])
    run.action(f"start metrics_server pid {ms.pid} on {addr}")

    clients = Clients(run, proxy, ms_port, rng.randrange(2**31))
    clients.start()
    ctl.start()

    # Resource samples every 250 ms. Each reported sample is the median of
    # five consecutive readings (about one second), so a worker thread that
    # is being replaced at that instant does not decide check d.
    t_end = run.t0 + args.duration * 1000.0
    t_warm = run.t0 + WARMUP_FRACTION * args.duration * 1000.0
    warm = end = None
    warm_readings: list[dict] = []
    recent: deque[dict] = deque(maxlen=SAMPLE_READINGS)
    peak = {"rss_kb": 0, "threads": 0}
    ms_died_at = None
    next_sample = 0.0
    while now_ms() < t_end and not run.stop.is_set():
        if not ms.alive():
            ms_died_at = now_ms()
            break
        t = now_ms()
        if t >= next_sample:
            s = proc_status(ms.pid)
            if s:
                s["t"] = t
                peak = {k: max(peak[k], s[k]) for k in peak}
                recent.append(s)
                if warm is None and t >= t_warm:
                    warm_readings.append(s)
                    if len(warm_readings) == SAMPLE_READINGS:
                        warm = median_sample(warm_readings)
                        run.action(f"warm-up sample: VmRSS {warm['rss_kb']} kB, "
                                   f"Threads {warm['threads']}")
            next_sample = t + 250
        run.stop.wait(0.05)
    if run.fatal:
        raise SetupError(run.fatal)

    # End of run: the last readings were taken under load; then stop the
    # load and the chaos.
    if ms.alive() and recent:
        end = median_sample(list(recent))
        run.action(f"end sample: VmRSS {end['rss_kb']} kB, Threads {end['threads']}")
    run.stop.set()
    ctl.join(timeout=15)
    clients.join(CLIENT_TIMEOUT_S * 2 + 2)
    t_stop = now_ms()

    # Check c: alive all along, exits 0 on SIGTERM.
    ms_rc = None
    if ms_died_at is not None or not ms.alive():
        t_dead = ms_died_at or now_ms()
        run.violate("c", t_dead, "died", f"metrics_server died during the run (exit "
                    f"{ms.proc.returncode})\n  {ms.describe_tail()}")
    else:
        run.action(f"SIGTERM metrics_server pid {ms.pid}")
        t_term = now_ms()
        ms.signal(signal.SIGTERM)
        ms_rc = ms.wait(10)
        if ms_rc is None:
            run.violate("c", t_term, "no exit on SIGTERM", "metrics_server did not exit within 10 s of SIGTERM")
            ms.signal(signal.SIGKILL)
            ms.wait(3)
        elif ms_rc != 0:
            run.violate("c", t_term, "non-zero exit on SIGTERM", f"metrics_server exited {ms_rc} on SIGTERM\n  "
                        + ms.describe_tail())
        else:
            run.action(f"metrics_server exited 0 in {now_ms() - t_term:.0f} ms")
    ms.close_logs()
    ctl.stop_last()
    proxy.stop()

    # Check d: resources.
    for key, unit in (("rss_kb", "kB"), ("threads", "")):
        if warm is None or end is None:
            run.violate("d", now_ms(), "no sample", f"no {key} sample (warm-up {warm}, end {end})")
            continue
        w, e = warm[key], end[key]
        if abs(e - w) > RESOURCE_TOLERANCE * w:
            run.violate("d", end["t"], "grew or shrank", f"{key}: {e}{unit} at the end vs {w}{unit} after warm-up "
                        f"({(e - w) / w:+.1%}, allowed ±{RESOURCE_TOLERANCE:.0%})")

    # Check e: recoveries.
    recoveries = analyse_recoveries(run, ctl, proxy, clients, t_stop)

    return summarize(run, ctl, proxy, clients, mlog, warm, end, peak, recoveries, ms_rc)


def analyse_recoveries(run, ctl, proxy, clients, t_stop):
    """Check e. Returns [(gen, recovery ms or None, note)]."""
    with ctl.lock:
        etag_gen = dict(ctl.etag_gen)
    first_by_gen: dict[int, float] = {}
    with clients.lock:
        seen = dict(clients.first_seen)
    for sid, t in seen.items():
        gen = etag_gen.get(sid)
        if gen is None:
            table, _ = proxy.lookup(sid)
            gen = table.gen if table else None
        if gen is not None and (gen not in first_by_gen or t < first_by_gen[gen]):
            first_by_gen[gen] = t
    with proxy.lock:
        failures = list(proxy.failures)
    out = []
    for inst in ctl.instances:
        if inst.gen == 1 or inst.t_ready is None:
            continue
        served = first_by_gen.get(inst.gen)
        horizon = served if served is not None else (inst.t_kill or t_stop)
        fails = [t for t, _ in failures if inst.t_ready <= t < horizon]
        start = max([inst.t_ready] + fails)
        if served is not None:
            took = served - start
            out.append((inst.gen, took, f"{len(fails)} failed polls first"))
            if took > RECOVERY_BOUND_MS:
                run.violate("e", served, "slow recovery", f"data_server #{inst.gen}: first served {took:.0f} ms "
                            f"after {'its last failed poll' if fails else 'its restart'} at "
                            f"{fmt_wall(start)} (bound {RECOVERY_BOUND_MS} ms)")
        else:
            waited = horizon - start
            if waited > RECOVERY_BOUND_MS:
                out.append((inst.gen, None, f"never served, waited {waited:.0f} ms"))
                run.violate("e", horizon, "no recovery", f"data_server #{inst.gen}: none of its snapshots "
                            f"served within {waited:.0f} ms of {fmt_wall(start)} (bound "
                            f"{RECOVERY_BOUND_MS} ms; ended {fmt_wall(horizon)})")
            else:
                out.append((inst.gen, None, f"not measured: ended {waited:.0f} ms after the "
                            f"window opened"))
    return out


def summarize(run, ctl, proxy, clients, mlog, warm, end, peak, recoveries, ms_rc) -> int:
    p = print
    p("")
    p("=" * 78)
    p(f"CHAOS SUMMARY  duration {run.args.duration:g} s  seed {run.args.seed}  "
      f"bins {run.args.bin_dir}")
    p("=" * 78)

    # Requests by endpoint and status.
    with clients.lock:
        counts = Counter(clients.counts)
        retries = clients.keepalive_retries
        first_200 = clients.first_200_t
    statuses = sorted({s for _, s in counts}, key=lambda s: (isinstance(s, str), str(s)))
    labels = [ENDPOINT_LABEL[k] for k, _ in MIX]
    w = max(len(x) for x in labels) + 2
    p("requests".ljust(w) + "".join(str(s).rjust(11) for s in statuses) + "total".rjust(9))
    for lab in labels:
        row = [counts.get((lab, s), 0) for s in statuses]
        p(lab.ljust(w) + "".join(str(n).rjust(11) for n in row) + str(sum(row)).rjust(9))
    total = sum(counts.values())
    p(f"{'all'.ljust(w)}{''.join(str(sum(counts.get((l, s), 0) for l in labels)).rjust(11) for s in statuses)}"
      f"{str(total).rjust(9)}   (~{total / run.args.duration:.0f} req/s; "
      f"{retries} keep-alive retries)")
    with clients.lock:
        reasons = sorted(clients.reasons_5xx.items(), key=lambda kv: -kv[1])
    if reasons:
        p("5xx by cause: " + ", ".join(f"{st} {grp} {err!r}: {n}" for (st, grp, err), n in reasons))
    if first_200 is not None:
        p(f"first snapshot served {first_200 - run.t0:.0f} ms after start")

    # Chaos actions.
    n = len(ctl.instances)
    exits = Counter(f"{i.kill_sig}->{i.exit_code}" for i in ctl.instances if i.kill_sig)
    p(f"data_server: {n} instances, {n - 1} restarts; kills {dict(ctl.kills)}; "
      f"exits {dict(exits)}; seeds {len({i.seed for i in ctl.instances})} distinct")
    faults = Counter()
    for i in ctl.instances:
        faults.update(i.faults)
    p(f"  ticks {sum(i.ticks for i in ctl.instances)}, injected faults {dict(faults)}")
    bad_term = [i.gen for i in ctl.instances if i.kill_sig == "SIGTERM" and i.exit_code != 0]
    if bad_term:
        p(f"  note: data_server instances {bad_term} did not exit 0 on SIGTERM")
    p(f"episodes: malformed {ctl.episodes['malformed']} ({ctl.episode_s['malformed']:.1f} s), "
      f"down {ctl.episodes['down']} ({ctl.episode_s['down']:.1f} s)")
    with proxy.lock:
        outcomes = dict(sorted(proxy.outcomes.items()))
        n_tables = len(proxy.tables)
        kinds = dict(sorted(proxy.malformed_kinds.items()))
    p(f"proxy: {n_tables} snapshots recorded; answers {outcomes}")
    if kinds:
        p(f"  malformed CSVs sent: {kinds}")
    with mlog.lock:
        p(f"metrics_server log: poll.run {mlog.events['poll.run']}, poll.error "
          f"{mlog.events['poll.error']} {dict(mlog.errors)}")
        p(f"  breaker transitions: {dict(mlog.breaker) if mlog.breaker else 'none seen'}")

    # Recoveries.
    took = [r[1] for r in recoveries if r[1] is not None]
    p(f"recoveries (bound {RECOVERY_BOUND_MS} ms = 2*{POLL_MS} + {BREAKER_COOLDOWN_MS} + "
      f"{FAULT_SLOW_MS}): {len(took)} measured" +
      (f", min {min(took):.0f} ms, max {max(took):.0f} ms" if took else ""))
    p("  " + ", ".join(f"#{g}: {f'{t:.0f} ms' if t is not None else note}"
                       for g, t, note in recoveries))

    # Resources.
    def sample(s):
        return "none" if s is None else f"VmRSS {s['rss_kb']} kB, Threads {s['threads']} " \
                                        f"@ {run.rel(s['t'])}"
    p(f"resources: warm-up {sample(warm)}; end {sample(end)}; peak VmRSS {peak['rss_kb']} kB, "
      f"Threads {peak['threads']}")
    p(f"metrics_server exit on SIGTERM: {ms_rc}")

    # Checks.
    p("-" * 78)
    failed = False
    with run.lock:
        for key, name in CHECKS.items():
            nv = run.violation_counts[key]
            failed |= nv > 0
            p(f"[{'PASS' if nv == 0 else 'FAIL'}] {key:<2} {name}" + (f": {nv} violations" if nv else ""))
            for kind, examples in run.violations[key].items():
                p(f"     {run.kind_counts[(key, kind)]} x {kind}, first:")
                for ex in examples:
                    p(f"       {ex}")
    p("-" * 78)
    p(f"RESULT: {'FAIL' if failed else 'PASS'}" + (f"  (logs kept in {run.log_dir})" if failed else ""))
    return 1 if failed else 0


def main() -> int:
    ap = argparse.ArgumentParser(description="Chaos soak test for metrics_server (see the module docstring).")
    ap.add_argument("--duration", type=float, default=60.0, help="seconds to run (default 60)")
    ap.add_argument("--bin-dir", default="target/release",
                    help="directory holding data_server and metrics_server (default target/release)")
    ap.add_argument("--seed", type=int, default=None, help="seed for the chaos schedule (default: random)")
    args = ap.parse_args()  # exits 2 on a usage error
    if args.duration < 5:
        ap.error("--duration must be at least 5 seconds")
    if args.seed is None:
        args.seed = random.randrange(1, 2**31)
    for b in ("data_server", "metrics_server"):
        path = os.path.join(args.bin_dir, b)
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            print(f"chaos: no executable {path} (build it, or pass --bin-dir)", file=sys.stderr)
            return 2

    log_dir = tempfile.mkdtemp(prefix="chaos-")
    run = Run(args, log_dir)

    def on_signal(signum, _frame):
        raise Interrupted(signal.Signals(signum).name)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    atexit.register(cleanup_children)

    code = 2
    try:
        code = execute(run)
    except SetupError as e:
        print(f"chaos: setup error: {e}", file=sys.stderr)
        code = 2
    except Interrupted as e:
        print(f"\nchaos: interrupted ({e}); stopping everything", file=sys.stderr)
        code = 1
    except Exception:
        traceback.print_exc()
        code = 2
    finally:
        run.stop.set()
        # No more signals while we clean up.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        cleanup_children()
        run.action_log.close()
        if code == 0:
            shutil.rmtree(log_dir, ignore_errors=True)
        else:
            print(f"chaos: logs in {log_dir}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
