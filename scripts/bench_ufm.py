#!/usr/bin/env python3
"""A million UFM ports as 16 shards (issue 19, item 8).

The upstream is scripted here, shaped like UFM Telemetry: a threaded
http.server on 127.0.0.1 answering
`GET /csv/xcset/ib_basic_debug?num_shards=16&shard=K&sharding_field=port_guid`
with no ETag, no X-Snapshot-Ts and no conditional GET. Its header is
`timestamp,source_id,tag,Node_GUID,port_guid,Port_Number`, 12 u64 counters
(`*Extended`) and `node_description`; 1,000,000 rows = 25,000 switches x 40
ports, GUIDs `0x%016x` (a switch's ports share its GUID, as UFM's do), tag
empty, one µs timestamp in every row, counters mostly above 2^53 (uniform
64-bit, so some near 2^64-1; the error counters of random widths), every
counter empty on ~1% of the ports (down). A row goes to shard FNV-1a 64 of its
port_guid mod 16 (data_server's `sharding_field` hash). Each shard's body is
rendered once, for two versions (ticks A and B: other counters, another
timestamp); the upstream serves either one version to every request
(`fixed`: the bench flips it for a changed body and keeps it for unchanged
ones) or, per shard, the other version than its last answer (`alternate`:
every poll a changed body). It records when each answer finished sending
(its last byte handed to the kernel).

metrics_server (release build) polls the 16 shard URLs every 1000 ms with
history off (`--history-snapshots 0`) and LOG_LEVEL=DEBUG, so unchanged polls
log `poll.run` too. Measured:

  1. lag of a changed body: per shard poll, `cycle_ms - fetch_ms -
     queue_ms` of its `poll.run` (parse, swap and compose after the answer
     was read; `queue_ms` is the wait for a turn before reading it, while
     the upstream's answer waits unread), over --flips flips; and end to
     end: from the last shard's answer of the new version completing (the
     upstream's clock) to the first `/stats` (asked every 20 ms) whose 16
     shards all carry the new version's snapshot id (the time that answer
     arrived: an upper bound). Target <= 1000 ms.
  2. CPU (utime+stime of /proc/PID/stat): a window of --polls changed polls
     (`alternate`) and one of as many unchanged polls (`fixed`), nothing else
     asked of the server meanwhile; per poll each, and the ratio. Target
     unchanged <= 10% of changed.
  3. RSS: VmHWM and VmRSS of /proc/PID/status after the run (also VmRSS
     sampled every 250 ms throughout). Target <= 600 MiB.

    python3 scripts/bench_ufm.py [--bin-dir target/release] [--no-build]
        [--rows 1000000] [--shards 16] [--flips 4] [--polls 160] [--out PATH]

Writes its table into BENCHMARKS.md between the `ufm` markers (or --out).
--smoke (2 shards x 2,000 rows, one flip, a few seconds; for `make test` on
the debug binaries) judges no timing: it checks that the harness runs and
that metrics_server serves the upstream's numbers exactly, and exits non-zero
otherwise.
"""

import argparse
import http.server
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "scripts"))
from benchlib import Server, write_section  # noqa: E402

BEGIN, END = "<!-- ufm:begin -->", "<!-- ufm:end -->"
PATH = "/csv/xcset/ib_basic_debug"
PORTS = 40
COUNTERS = [
    "PortXmitDataExtended", "PortRcvDataExtended", "PortXmitPktsExtended", "PortRcvPktsExtended",
    "PortXmitWaitExtended", "SymbolErrorCounterExtended", "LinkDownedCounterExtended",
    "PortRcvErrorsExtended", "PortXmitDiscardsExtended", "PortUniCastXmitPktsExtended",
    "PortMultiCastXmitPktsExtended", "PortRcvRemotePhysicalErrorsExtended",
]
# Counters that are error counts: random widths (0 to 64 bits), the rest uniform 64-bit.
ERRORS = {"SymbolErrorCounterExtended", "LinkDownedCounterExtended", "PortRcvErrorsExtended",
          "PortXmitDiscardsExtended", "PortRcvRemotePhysicalErrorsExtended"}
HEADER = ",".join(["timestamp", "source_id", "tag", "Node_GUID", "port_guid", "Port_Number",
                   *COUNTERS, "node_description"]) + "\n"
GUID_BASE = 0xB83FD20300000000
TARGET_LAG_MS, TARGET_CPU_RATIO, TARGET_RSS_MIB = 1000.0, 0.10, 600.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


def fail(msg: str):
    sys.exit(f"bench_ufm: {msg}")


# ---------------------------------------------------------------- the upstream

def fnv1a64(text: str) -> int:
    h = 0xCBF29CE484222325
    for b in text.encode():
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def render(switches: int, shards: int, seed: int, ts_us: int) -> tuple[list[bytes], dict]:
    """Each shard's body for one tick, and a few probes: (row id, counter,
    expected JSON text) per shard, for the smoke check."""
    rnd = random.Random(seed)
    bits = rnd.getrandbits
    err_width = [c in ERRORS for c in COUNTERS]
    parts: list[list[str]] = [[HEADER] for _ in range(shards)]
    probes: dict[int, list] = {k: [] for k in range(shards)}
    top = (1 << 64) - 1
    for s in range(switches):
        guid = f"0x{GUID_BASE + s * 0x100:016x}"
        shard = fnv1a64(guid) % shards
        prefix = f"{ts_us},{guid},,{guid},{guid},"
        desc = f"MF0;leaf-{s:05d}:MQM9790/U1"
        out = parts[shard]
        for port in range(1, PORTS + 1):
            if bits(7) == 0:  # ~1% of ports down: every counter empty
                out.append(f"{prefix}{port},,,,,,,,,,,,,{desc}\n")
                if len(probes[shard]) < 3:
                    probes[shard].append((f"{guid}:{port}", COUNTERS[0], "null"))
                continue
            vals = [bits(bits(6) + 1) if e else bits(64) for e in err_width]
            if bits(10) == 0:  # now and then a counter at the very top
                vals[bits(3)] = top - bits(8)
            out.append(f"{prefix}{port},{','.join(map(str, vals))},{desc}\n")
            if len(probes[shard]) < 3 or (vals[0] > top - 256 and len(probes[shard]) < 6):
                probes[shard].append((f"{guid}:{port}", COUNTERS[0], str(vals[0])))
    return ["".join(p).encode() for p in parts], probes


class Upstream:
    """The scripted UFM: bodies[version][shard], served `fixed` (version
    `current` to all) or `alternate` (each shard the version it did not
    serve last). `served` lists (shard, version, t_start, t_done) in epoch
    seconds, t_done when the last byte was handed to the kernel."""

    def __init__(self, bodies: list[list[bytes]]):
        self.bodies, self.shards = bodies, len(bodies[0])
        self.mode, self.current = "fixed", 0
        self.last = [None] * self.shards
        self.served: list[tuple[int, int, float, float]] = []
        self.lock = threading.Lock()
        up = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                t0 = time.time()
                url = urllib.parse.urlsplit(self.path)
                q = dict(urllib.parse.parse_qsl(url.query))
                try:
                    ok = (url.path == PATH and int(q.get("num_shards", "")) == up.shards
                          and q.get("sharding_field") == "port_guid" and 0 <= int(q["shard"]) < up.shards)
                except (KeyError, ValueError):
                    ok = False
                if not ok:
                    body = b'{"error":"want ' + PATH.encode() + b'?num_shards=N&shard=K&sharding_field=port_guid"}'
                    self.send_response(400 if url.path == PATH else 404)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                k = int(q["shard"])
                with up.lock:
                    v = up.current if up.mode == "fixed" else 1 - (up.last[k] or 0)
                    up.last[k] = v
                body = up.bodies[v][k]
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                self.wfile.flush()
                done = time.time()
                with up.lock:
                    up.served.append((k, v, t0, done))

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, k: int) -> str:
        return f"http://127.0.0.1:{self.port}{PATH}?num_shards={self.shards}&shard={k}&sharding_field=port_guid"

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


# ---------------------------------------------------------------- measuring

def get(addr: str, path: str) -> bytes:
    with urllib.request.urlopen(f"http://{addr}{path}", timeout=10) as r:
        return r.read()


def shard_ids(ms: Server, shards: int) -> list:
    try:
        v = json.loads(get(ms.url_addr, "/stats"))
    except (OSError, ValueError):
        return [None] * shards
    got = [s.get("snapshot_id") for s in v.get("shards") or []]
    return got if len(got) == shards else [None] * shards


def wait(what: str, f, seconds: float, step: float = 0.02):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        v = f()
        if v:
            return v
        time.sleep(step)
    fail(f"timed out ({seconds:g} s) waiting for {what}")


def cpu_s(pid: int) -> tuple[float, float, int]:
    """utime and stime of every thread of `pid`, seconds, and its minor
    page faults."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK, int(fields[7])


def status_mib(pid: int) -> dict:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmHWM", "VmRSS"):
                out[k] = int(v.split()[0]) / 1024
    return out


def runs(ms: Server, since: int, changed: bool) -> list[dict]:
    """`poll.run` lines logged after line `since`: changed bodies (rows
    parsed) or unchanged ones."""
    out = []
    for l in ms.lines[since:]:
        if l.get("event") != "poll.run" or l.get("status") != 200:
            continue
        if changed and "parse_ms" in l:
            out.append(l)
        elif not changed and l.get("unchanged"):
            out.append(l)
    return out


def flip_lags(up: Upstream, ms: Server, flips: int, poll_s: float, ids: dict) -> tuple[list, list, list]:
    """Flips the version `flips` times; per flip the end-to-end lag (ms), and
    every changed poll.run of the flips."""
    e2e, flip_runs, to_served = [], [], []
    for _ in range(flips):
        time.sleep(poll_s * 1.5)  # every shard has polled the held version again
        v = 1 - up.current
        since = len(ms.lines)
        with up.lock:
            t_flip = time.time()
            up.current = v

        def served():
            got = shard_ids(ms, up.shards)
            if v in ids:
                return got == ids[v] and got
            return all(g and g != o for g, o in zip(got, ids[1 - v])) and got

        got = wait(f"version {'AB'[v]} on every shard", served, poll_s * 3 + 60)
        t_seen = time.time()
        ids.setdefault(v, got)
        with up.lock:
            firsts = {}
            for k, ver, t0, done in up.served:
                if ver == v and t0 >= t_flip and k not in firsts:
                    firsts[k] = done
        if len(firsts) != up.shards:
            fail(f"the upstream served version {'AB'[v]} to {len(firsts)} of {up.shards} shards")
        e2e.append((t_seen - max(firsts.values())) * 1000)
        to_served.append((t_seen - t_flip) * 1000)
        time.sleep(0.2)  # the last poll.run lines reach the log
        flip_runs += runs(ms, since, True)
    return e2e, flip_runs, to_served


def cpu_window(up: Upstream, ms: Server, mode: str, polls: int, poll_s: float) -> dict:
    """CPU of metrics_server over `polls` polls of one kind: `alternate`
    (every poll a changed body) or `fixed` (unchanged)."""
    changed = mode == "alternate"
    with up.lock:
        up.mode = mode
    # Settle: every shard has had a poll of the new kind.
    start = len(ms.lines)
    wait(f"{up.shards} {'changed' if changed else 'unchanged'} polls to settle",
         lambda: len(runs(ms, start, changed)) >= up.shards, poll_s * 4 + 60, 0.05)
    since = len(ms.lines)
    u0, s0, f0 = cpu_s(ms.proc.pid)
    t0 = time.monotonic()
    deadline = t0 + max(60.0, polls / up.shards * poll_s * 6)
    while len(runs(ms, since, changed)) < polls and time.monotonic() < deadline:
        time.sleep(0.01)
    u1, s1, f1 = cpu_s(ms.proc.pid)
    secs = time.monotonic() - t0
    mine, other = runs(ms, since, changed), runs(ms, since, not changed)
    n = len(mine)
    with up.lock:
        up.mode = "fixed"
    if n == 0:
        fail(f"no {'changed' if changed else 'unchanged'} polls in {secs:.0f} s")
    return {"n": n, "other": len(other), "secs": secs, "user": u1 - u0, "sys": s1 - s0,
            "per_poll_ms": (u1 - u0 + s1 - s0) / n * 1000, "faults": (f1 - f0) / n,
            "fetch_ms": statistics.median(l["fetch_ms"] for l in mine),
            "cycle_ms": statistics.median(l["cycle_ms"] for l in mine),
            "parse_ms": statistics.median(l["parse_ms"] for l in mine) if changed else None}


def smoke_check(ms: Server, probes: dict, version: int):
    """GetMetric gives the upstream's counter text exactly (and null for an
    empty cell), for every probed row of every shard."""
    for k, rows in probes[version].items():
        if not rows:
            fail(f"shard {k} has no rows to probe")
        for row_id, metric, want in rows:
            q = urllib.parse.urlencode({"id": row_id, "metric": metric})
            text = get(ms.url_addr, f"/telemetry/GetMetric?{q}").decode()
            if f'"value":{want},' not in text and not text.endswith(f'"value":{want}}}'):
                fail(f"GetMetric {row_id} {metric}: want value {want}, got {text}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin-dir", default="target/release")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--rows", type=int, default=1_000_000, help="ports (40 per switch)")
    ap.add_argument("--shards", type=int, default=16)
    ap.add_argument("--flips", type=int, default=4, help="changes of the version timed end to end")
    ap.add_argument("--polls", type=int, default=160, help="polls in each CPU window")
    ap.add_argument("--poll-ms", type=int, default=1000)
    ap.add_argument("--out", default=os.path.join(REPO, "BENCHMARKS.md"))
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args()
    # Killed: unwind, so that `finally` stops metrics_server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.smoke:
        args.rows, args.shards, args.flips, args.polls, args.poll_ms = 2_000, 2, 1, 6, 200
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--locked", "--bins"], cwd=REPO, check=True)
    ms_bin = os.path.join(args.bin_dir, "metrics_server")
    if not os.access(ms_bin, os.X_OK):
        fail(f"no {ms_bin} (build it, or give --bin-dir)")
    switches = max(1, args.rows // PORTS)
    rows = switches * PORTS
    poll_s = args.poll_ms / 1000

    load0 = open("/proc/loadavg").read().split()[0]
    t = time.monotonic()
    ts_a = int(time.time() * 1_000_000)
    body_a, probes_a = render(switches, args.shards, 1, ts_a)
    body_b, probes_b = render(switches, args.shards, 2, ts_a + 1_000_000)
    sizes = [len(b) for b in body_a]
    print(f"bench_ufm: rendered {rows:,} rows x 2 versions as {args.shards} shards "
          f"({sum(sizes) / 2**20:.0f} MiB a version, shard {min(sizes) / 2**20:.1f}-{max(sizes) / 2**20:.1f} MiB) "
          f"in {time.monotonic() - t:.0f} s", flush=True)
    up = Upstream([body_a, body_b])
    urls = ",".join(up.url(k) for k in range(args.shards))
    # VmRSS samples, by phase of the run.
    phase = ["load"]
    rss_seen: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        ms = Server(ms_bin, ["--upstream-urls", urls, "--poll-ms", str(args.poll_ms),
                             "--history-snapshots", "0", "--log-level", "DEBUG",
                             # the bodies' timestamps stay those of the render
                             "--ready-max-age-ms", "86400000"],
                    os.path.join(tmp, "ms.log"))
        stop = threading.Event()

        def sample():
            while not stop.wait(0.25):
                try:
                    rss_seen.setdefault(phase[0], []).append(status_mib(ms.proc.pid)["VmRSS"])
                except (OSError, KeyError):
                    return

        threading.Thread(target=sample, daemon=True).start()
        try:
            ids = {0: wait("version A on every shard",
                           lambda: all(shard_ids(ms, args.shards)) and shard_ids(ms, args.shards),
                           120, 0.1)}
            stats = json.loads(get(ms.url_addr, "/stats"))
            if stats["snapshot"]["switches"] != rows:
                fail(f"/stats counts {stats['snapshot']['switches']} rows, want {rows}")
            probes = {0: probes_a, 1: probes_b}
            if args.smoke:
                smoke_check(ms, probes, 0)
            rss_loaded = status_mib(ms.proc.pid)["VmRSS"]
            phase[0] = "flips"
            py0 = os.times()
            e2e, flip_runs, to_served = flip_lags(up, ms, args.flips, poll_s, ids)
            py1 = os.times()
            py_cpu = (py1.user - py0.user + py1.system - py0.system) / (py1.elapsed - py0.elapsed)
            if args.smoke:
                smoke_check(ms, probes, up.current)
            phase[0] = "unchanged"
            unchanged = cpu_window(up, ms, "fixed", args.polls, poll_s)
            phase[0] = "changed"
            changed = cpu_window(up, ms, "alternate", args.polls, poll_s)
            phase[0] = "after"
            time.sleep(poll_s * 2)
            mem = status_mib(ms.proc.pid)
            errors = [l for l in ms.lines if l.get("event") == "poll.error"]
            load1 = open("/proc/loadavg").read().split()[0]
        finally:
            stop.set()
            ms.stop()
            up.stop()
        if errors:
            print(f"bench_ufm: {len(errors)} poll.error lines, first: {errors[0]}", flush=True)

    queue = [l.get("queue_ms", 0.0) for l in flip_runs]
    lags = [l["cycle_ms"] - l["fetch_ms"] - q for l, q in zip(flip_runs, queue)]
    parse = [l["parse_ms"] for l in flip_runs]
    fetch = [l["fetch_ms"] for l in flip_runs]
    rest = [lag - l["parse_ms"] for l, lag in zip(flip_runs, lags)]
    ratio = unchanged["per_poll_ms"] / changed["per_poll_ms"] if changed["per_poll_ms"] else float("inf")
    peak = {k: max(v) for k, v in rss_seen.items()}
    peaks = ", ".join(f"{name} {peak[k]:.0f}" for k, name in (
        ("load", "first load"), ("flips", "flips"), ("unchanged", "unchanged window"),
        ("changed", "changed window")) if k in peak)
    verdict = lambda ok: "not judged (smoke)" if args.smoke else "met" if ok else "NOT met"  # noqa: E731
    worst_lag = max(max(lags), max(e2e))
    lag_ok = worst_lag <= TARGET_LAG_MS
    rows_md = [
        ("upstream", f"{rows:,} ports ({switches:,} switches x {PORTS}) x 12 u64 counters, "
                     f"{args.shards} shards of {min(sizes) / 2**20:.1f}-{max(sizes) / 2**20:.1f} MiB "
                     f"({sum(sizes) / 2**20:.0f} MiB in all); no ETag; polled every {args.poll_ms} ms; history off"),
        ("changed shard: served after its answer was read, cycle_ms - fetch_ms - queue_ms, p50 / max",
         f"{statistics.median(lags):.0f} / {max(lags):.0f} ms (n={len(lags)}, {args.flips} flips)"),
        ("... of which parse (parse_ms), p50 / max", f"{statistics.median(parse):.0f} / {max(parse):.0f} ms"),
        ("... the rest: swap, compose, p50 / max",
         f"{statistics.median(rest):.0f} / {max(rest):.0f} ms"),
        ("waiting for a turn to read and parse before reading (queue_ms, not in the lag), p50 / max",
         f"{statistics.median(queue):.0f} / {max(queue):.0f} ms"),
        ("fetch of a shard (fetch_ms, not in the lag), p50 / max", f"{statistics.median(fetch):.0f} / {max(fetch):.0f} ms"),
        (f"end to end: last shard's answer sent to /stats serving all {args.shards} new",
         ", ".join(f"{x:.0f}" for x in e2e) + f" ms (max {max(e2e):.0f})"),
        (f"flip of the version to all {args.shards} served (includes the wait for each shard's next poll)",
         ", ".join(f"{x:.0f}" for x in to_served) + " ms"),
        ("lag target <= 1000 ms (per shard max, and end to end max)",
         f"{verdict(lag_ok)}: worst {worst_lag:.0f} ms" + ("" if lag_ok else f", {worst_lag - TARGET_LAG_MS:.0f} ms over")),
        ("CPU per changed poll (user + sys)",
         f"{changed['per_poll_ms']:.1f} ms ({changed['user']:.2f} + {changed['sys']:.2f} s over {changed['n']} polls"
         f" in {changed['secs']:.0f} s; parse p50 {changed['parse_ms']:.0f} ms)"),
        ("CPU per unchanged poll (user + sys)",
         f"{unchanged['per_poll_ms']:.1f} ms ({unchanged['user']:.2f} + {unchanged['sys']:.2f} s over {unchanged['n']} polls"
         f" in {unchanged['secs']:.0f} s; fetch p50 {unchanged['fetch_ms']:.0f} ms)"),
        ("unchanged / changed CPU", f"{ratio * 100:.1f}% (target <= 10%: {verdict(ratio <= TARGET_CPU_RATIO)}"
         + ("" if ratio <= TARGET_CPU_RATIO else
            f"; {unchanged['per_poll_ms'] - TARGET_CPU_RATIO * changed['per_poll_ms']:.1f} ms a poll over") + ")"),
        ("RSS after the run: VmHWM / VmRSS",
         f"{mem['VmHWM']:.0f} / {mem['VmRSS']:.0f} MiB (target VmHWM <= 600 MiB: {verdict(mem['VmHWM'] <= TARGET_RSS_MIB)}"
         + ("" if mem["VmHWM"] <= TARGET_RSS_MIB else f"; {mem['VmHWM'] - TARGET_RSS_MIB:.0f} MiB over") + ")"),
        ("VmRSS with every shard loaded and idle", f"{rss_loaded:.0f} MiB"),
        ("VmRSS peaks sampled every 250 ms, by phase", f"{peaks} MiB"),
        ("minor page faults per poll, changed / unchanged",
         f"{changed['faults']:.0f} / {unchanged['faults']:.0f} "
         f"({changed['faults'] * 4 / 1024:.0f} / {unchanged['faults'] * 4 / 1024:.0f} MiB of 4 KiB pages)"),
        ("the scripted upstream's own CPU during the flips (same host)", f"{py_cpu * 100:.0f}% of a core"),
        ("load average (1 min) at start / end", f"{load0} / {load1}"),
    ]
    if changed["other"] or unchanged["other"]:
        rows_md.append(("polls of the other kind inside the CPU windows",
                        f"changed window {changed['other']}, unchanged window {unchanged['other']}"))
    md = "| figure | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows_md)
    print(md, flush=True)
    if errors:
        fail(f"{len(errors)} poll errors")
    if args.smoke:
        print("bench_ufm: smoke ok (no timing judged)")
        return 0
    section = (f"{BEGIN}\n## A million UFM ports in {args.shards} shards (issue 19, item 8)\n\n"
               f"`python3 scripts/bench_ufm.py` on {time.strftime('%Y-%m-%d')}, release build, "
               f"nproc {os.cpu_count()}; the upstream is the script's own UFM-shaped server "
               f"(Python, same host). See the script's docstring for the method.\n\n{md}\n{END}")
    write_section(args.out, BEGIN, END, section)
    print(f"bench_ufm: wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
