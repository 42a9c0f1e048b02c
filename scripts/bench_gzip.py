#!/usr/bin/env python3
"""What gzip costs and saves, at 10k and 100k switches (issue 12, item 8).

For each fleet size it starts a data_server that does not tick during the
run (so one snapshot is measured throughout) and a metrics_server polling
it, then for each big answer measures, side by side in the same run:

  plain     bytes, and the median time of 5 requests without gzip
  gzip      bytes, and the time of the *first* gzip request (it deflates the
            snapshot's shared parts: the build cost) and the median of 5
            more (the shared parts reused)

Times are wall-clock for a whole answer read over loopback by this script,
so they include Python's reading; ratios between columns of one run hold,
absolute numbers on this shared machine do not. Every gzip body is inflated
and compared with the plain one (our clocks and the age aside).

    python3 scripts/bench_gzip.py [--bin-dir target/release] [--no-build]
                                  [--sizes 10000,100000] [--out PATH]

Writes its table into BENCHMARKS.md between the `gzip` markers (unless
--out names another file); --smoke (64 and 1000 switches, debug binaries
welcome) only checks that the harness runs and prints the table.
"""

import argparse
import gzip
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "scripts"))
from benchlib import Server, write_section  # noqa: E402
BEGIN, END = "<!-- gzip:begin -->", "<!-- gzip:end -->"


def get(addr, path: str, gz: bool) -> tuple[int, dict, bytes, float]:
    """One GET on a fresh connection: status, headers, body, seconds."""
    started = time.perf_counter()
    with socket.create_connection(addr, timeout=120) as s:
        extra = "Accept-Encoding: gzip\r\n" if gz else ""
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n".encode())
        buf = bytearray()
        while chunk := s.recv(1 << 20):
            buf += chunk
    took = time.perf_counter() - started
    head, _, body = bytes(buf).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:])}
    if int(headers.get("content-length", -1)) != len(body):
        sys.exit(f"bench_gzip: {path}: body of {len(body)} bytes, Content-Length {headers.get('content-length')}")
    return int(lines[0].split(" ")[1]), headers, body, took


def comparable(path: str, body: bytes) -> bytes:
    """What must be equal between a plain and a gzip answer."""
    if path == "/metrics":  # our own counters and clocks move
        return b"\n".join(l for l in body.split(b"\n") if b"switch_id=" in l)
    return re.sub(rb'"age_ms":\d+', b'"age_ms":0', body)


def measure(addr, path: str) -> dict:
    plain = [get(addr, path, False) for _ in range(5)]
    first = get(addr, path, True)
    again = [get(addr, path, True) for _ in range(5)]
    for status, headers, _, _ in [*plain, first, *again]:
        if status != 200:
            sys.exit(f"bench_gzip: {path} answered {status}")
    if first[1].get("content-encoding") != "gzip":
        sys.exit(f"bench_gzip: {path} did not answer gzip")
    if comparable(path, gzip.decompress(first[2])) != comparable(path, plain[0][2]):
        sys.exit(f"bench_gzip: {path}: the gzip body inflates to something else")
    return {
        "plain_bytes": len(plain[0][2]),
        "plain_ms": statistics.median(p[3] for p in plain) * 1000,
        "gz_bytes": len(first[2]),
        "first_ms": first[3] * 1000,
        "again_ms": statistics.median(a[3] for a in again) * 1000,
    }


def label(n: int) -> str:
    return f"{n // 1000}k" if n >= 10_000 else str(n)


def run(bin_dir: str, sizes: list[int], tmp: str) -> list[tuple[int, str, dict]]:
    rows = []
    for n in sizes:
        ds = Server(os.path.join(bin_dir, "data_server"),
                    ["--switches", str(n), "--interval-sec", "3600"], os.path.join(tmp, f"ds-{n}.log"))
        ms = Server(os.path.join(bin_dir, "metrics_server"),
                    ["--upstream-url", f"http://127.0.0.1:{ds.addr[1]}/counters", "--poll-ms", "500"],
                    os.path.join(tmp, f"ms-{n}.log"))
        try:
            deadline = time.monotonic() + 120
            while get(ms.addr, "/ready", False)[0] != 200:
                if time.monotonic() > deadline:
                    sys.exit("bench_gzip: metrics_server never became ready")
                time.sleep(0.2)
            for server, path in [(ds, "/counters"), (ms, "/telemetry/ListMetrics"),
                                 (ms, "/telemetry/ListMetrics?format=csv"), (ms, "/metrics")]:
                r = measure(server.addr, path)
                rows.append((n, path, r))
                print(f"{label(n):>5} {path:38} plain {r['plain_bytes']:>10} B {r['plain_ms']:8.1f} ms | "
                      f"gzip {r['gz_bytes']:>9} B first {r['first_ms']:8.1f} ms, then {r['again_ms']:7.1f} ms",
                      flush=True)
        finally:
            ms.stop()
            ds.stop()
    return rows


def table(rows) -> str:
    out = ["| switches | answer | plain bytes | gzip bytes | ratio | plain ms | first gzip ms (deflates) | later gzip ms |",
           "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for n, path, r in rows:
        out.append(f"| {label(n)} | `{path}` | {r['plain_bytes']:,} | {r['gz_bytes']:,} | "
                   f"{r['plain_bytes'] / r['gz_bytes']:.1f}× | {r['plain_ms']:.1f} | {r['first_ms']:.1f} | "
                   f"{r['again_ms']:.1f} |")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin-dir", default="target/release")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--out", default=os.path.join(REPO, "BENCHMARKS.md"))
    ap.add_argument("--smoke", action="store_true", help="64 and 1000 switches, table printed only")
    args = ap.parse_args()
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--locked", "--bins"], cwd=REPO, check=True)
    sizes = [64, 1000] if args.smoke else [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        rows = run(args.bin_dir, sizes, tmp)
    md = table(rows)
    print(md)
    if args.smoke:
        return 0
    section = (f"{BEGIN}\n## gzip (issue 12, item 8)\n\n`python3 scripts/bench_gzip.py` on "
               f"{time.strftime('%Y-%m-%d')}, release build, one snapshot per size (the producer does "
               f"not tick during the run); each figure a fresh connection over loopback, read by Python. "
               f"\"first gzip\" includes deflating the snapshot's shared parts (at the level `src/gzip.rs` sets); later gzip "
               f"requests reuse them.\n\n{md}\n{END}")
    write_section(args.out, BEGIN, END, section)
    print(f"bench_gzip: wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
