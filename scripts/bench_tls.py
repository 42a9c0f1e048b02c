#!/usr/bin/env python3
"""What TLS costs (issue 14): the same metrics_server binary, plain and with
TLS_CERT_FILE/TLS_KEY_FILE, polling one data_server that does not tick
during the run, measured side by side with wrk in alternating rounds:

  GetMetric c10              keep-alive: the per-request cost of encryption
  GetMetric c10, close       a new connection per request: a full handshake
                             (ECDSA P-256, TLS 1.3) every time
  ListMetrics <n> c4         keep-alive, the whole table: bulk encryption

Each row gives the best round of each side (requests/s), and TLS / plain.
The certificates are made here with `openssl` and thrown away. Ratios
between the two columns of one run hold; absolute figures on this shared
machine do not.

    python3 scripts/bench_tls.py [--bin-dir target/release] [--no-build]
                                 [--switches 10000] [--duration 4] [--rounds 3]
                                 [--out PATH]

Writes its table into BENCHMARKS.md between the `tls` markers (unless
--out names another file); --smoke (64 switches, 1 s runs, one round,
debug binaries welcome) only checks that the harness runs.
"""

import argparse
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "scripts"))
from benchlib import Server, write_section  # noqa: E402
BEGIN, END = "<!-- tls:begin -->", "<!-- tls:end -->"


def make_pair(tmp: str) -> tuple[str, str]:
    """A self-signed ECDSA P-256 certificate for 127.0.0.1, as the README's."""
    cert, key = os.path.join(tmp, "tls.pem"), os.path.join(tmp, "tls.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj", "/CN=bench",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    return cert, key


def status(addr, path: str, ca: str | None) -> int:
    """One GET (over TLS trusting `ca` when given): the status, 0 if none."""
    try:
        with socket.create_connection(addr, timeout=10) as raw:
            sock = raw
            if ca:
                ctx = ssl.create_default_context(cafile=ca)
                sock = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            head = sock.recv(64).decode("latin-1")
            return int(head.split(" ")[1])
    except (OSError, ValueError, IndexError):
        return 0


def wrk(url: str, conns: int, duration: int, close: bool) -> float:
    """wrk's requests/s; exits if wrk failed or saw errors or non-2xx."""
    argv = ["wrk", f"-t{min(conns, 2)}", f"-c{conns}", f"-d{duration}s", "--timeout", "5s"]
    if close:
        argv += ["-H", "Connection: close"]
    out = subprocess.run([*argv, url], capture_output=True, text=True)
    text = out.stdout + out.stderr
    if out.returncode != 0 or "Non-2xx" in text:
        sys.exit(f"bench_tls: wrk failed on {url}:\n{text}")
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if not rps:
        sys.exit(f"bench_tls: no Requests/sec from wrk:\n{text}")
    total = re.search(r"(\d+) requests in", text)
    if errors and total and sum(map(int, errors.groups())) > 0.01 * int(total.group(1)):
        sys.exit(f"bench_tls: more than 1% socket errors on {url}:\n{text}")
    return float(rps.group(1))


def run(args, tmp: str) -> list[tuple[str, float, float]]:
    cert, key = make_pair(tmp)
    ds = Server(os.path.join(args.bin_dir, "data_server"),
                ["--switches", str(args.switches), "--interval-sec", "3600"], os.path.join(tmp, "ds.log"))
    upstream = ["--upstream-url", f"http://{ds.url_addr}/counters", "--poll-ms", "1000"]
    plain = Server(os.path.join(args.bin_dir, "metrics_server"), upstream, os.path.join(tmp, "plain.log"))
    tls = Server(os.path.join(args.bin_dir, "metrics_server"),
                 [*upstream, "--tls-cert-file", cert, "--tls-key-file", key], os.path.join(tmp, "tls.log"))
    try:
        deadline = time.monotonic() + 120
        while status(plain.addr, "/ready", None) != 200 or status(tls.addr, "/ready", cert) != 200:
            if time.monotonic() > deadline:
                sys.exit("bench_tls: the metrics_servers never became ready")
            time.sleep(0.2)
        get = "/telemetry/GetMetric?switch_id=sw-001&metric=latency_us"
        scenarios = [("GetMetric c10", get, 10, False),
                     ("GetMetric c10, a connection per request", get, 10, True),
                     (f"ListMetrics {args.switches} c4", "/telemetry/ListMetrics", 4, False)]
        rows = []
        for name, path, conns, close in scenarios:
            best = {"plain": 0.0, "tls": 0.0}
            for r in range(args.rounds):
                # Alternate which side goes first, so drift hits both.
                order = [("plain", plain, "http"), ("tls", tls, "https")]
                for side, server, scheme in (order if r % 2 == 0 else order[::-1]):
                    rps = wrk(f"{scheme}://{server.url_addr}{path}", conns, args.duration, close)
                    best[side] = max(best[side], rps)
                    print(f"  {name:42} {side:5} round {r + 1}: {rps:10.0f} req/s", flush=True)
            rows.append((name, best["plain"], best["tls"]))
        return rows
    finally:
        tls.stop()
        plain.stop()
        ds.stop()


def table(rows) -> str:
    out = ["| scenario | plain req/s | TLS req/s | TLS / plain |", "|---|---:|---:|---:|"]
    for name, p, t in rows:
        out.append(f"| {name} | {p:,.0f} | {t:,.0f} | {t / p:.2f} |")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin-dir", default="target/release")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--switches", type=int, default=10_000)
    ap.add_argument("--duration", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(REPO, "BENCHMARKS.md"))
    ap.add_argument("--smoke", action="store_true", help="64 switches, 1 s runs, table printed only")
    args = ap.parse_args()
    for tool in ("wrk", "openssl"):
        if shutil.which(tool) is None:
            sys.exit(f"bench_tls: {tool} is not installed (Debian: apt-get install {tool})")
    if args.smoke:
        args.switches, args.duration, args.rounds = 64, 1, 1
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--locked", "--bins"], cwd=REPO, check=True)
    with tempfile.TemporaryDirectory() as tmp:
        rows = run(args, tmp)
    md = table(rows)
    print(md)
    if args.smoke:
        return 0
    section = (f"{BEGIN}\n## TLS (issue 14)\n\n`python3 scripts/bench_tls.py` on {time.strftime('%Y-%m-%d')}, "
               f"release build: one metrics_server plain and one with a self-signed ECDSA P-256 certificate, "
               f"both polling one data_server of {args.switches} switches that does not tick during the run; "
               f"wrk, {args.rounds} alternating rounds of {args.duration} s per side, the best of each. "
               f"TLS 1.3 (wrk's OpenSSL against rustls with ring).\n\n{md}\n{END}")
    write_section(args.out, BEGIN, END, section)
    print(f"bench_tls: wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
