#!/usr/bin/env python3
"""A million switches as 16 shards of one data_server (issue 11, item 6).

Side by side in one run:
  sharded   data_server --switches 1000000 (tick every --interval s), and a
            metrics_server polling its 16 shards (num_shards=16&shard=K)
            every 200 ms;
  single    data_server --switches 64 and a metrics_server polling it with
            one UPSTREAM_URL: the figure GetMetric is held to.

Measured:
  - lag: for each producer tick, from its X-Snapshot-Ts to the moment the
    composed fabric serves that tick on every shard (/stats shards all carry
    the tick's snapshot id);
  - metrics_server RSS (VmRSS), the largest seen over the ticks;
  - the producer's tick (gen.tick duration_ms) and the parse of a shard
    (poll.run parse_ms), medians and maxima;
  - GetMetric keep-alive with wrk -c100, sharded and single alternating
    (--rounds each), the ratio of the medians.

    python3 scripts/bench_shards.py [--bin-dir target/release] [--no-build]
        [--switches 1000000] [--ticks 4] [--rounds 2] [--duration 5] [--out PATH]

Writes its table into BENCHMARKS.md between the `shards` markers (or --out);
--smoke (20,000 switches, 2 ticks, 1 s of wrk) only checks that it runs.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "scripts"))
import bench  # noqa: E402  (wrk runner and its latency accounting)
from benchlib import Server, write_section  # noqa: E402

BEGIN, END = "<!-- shards:begin -->", "<!-- shards:end -->"
SHARDS = 16


def get_json(addr: str, path: str):
    with urllib.request.urlopen(f"http://{addr}{path}", timeout=30) as r:
        return json.loads(r.read())


def wait(what: str, f, seconds: float):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        v = f()
        if v:
            return v
        time.sleep(0.02)
    sys.exit(f"bench_shards: timed out waiting for {what}")


def tick_lags(ds: Server, ms: Server, ticks: int, interval: float) -> tuple[list[float], float]:
    """Lag of each of the next `ticks` producer ticks, and the largest RSS."""
    lags, rss = [], ms.rss_mb()
    seen = {l["snapshot_id"] for l in ds.lines if l.get("event") == "gen.tick"}
    for _ in range(ticks):
        tick = wait("a producer tick",
                    lambda: next((l for l in ds.lines if l.get("event") == "gen.tick"
                                  and l["snapshot_id"] not in seen), None), interval * 3 + 30)
        seen.add(tick["snapshot_id"])
        prefix = tick["snapshot_id"] + "-s"

        def composed():
            shards = get_json(ms.url_addr, "/stats").get("shards") or []
            ids = [s.get("snapshot_id") or "" for s in shards]
            return len(ids) == SHARDS and all(i.startswith(prefix) for i in ids)

        wait("the tick on every shard", composed, interval * 3 + 30)
        lags.append(time.time() * 1000 - tick["ts_ms"])
        rss = max(rss, ms.rss_mb())
    return lags, rss


def figures(lines: list[dict], event: str, key: str) -> list[float]:
    return [l[key] for l in lines if l.get("event") == event and key in l]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin-dir", default="target/release")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--switches", type=int, default=1_000_000)
    ap.add_argument("--interval", type=float, default=10.0, help="producer tick, seconds")
    ap.add_argument("--ticks", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--out", default=os.path.join(REPO, "BENCHMARKS.md"))
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args()
    if args.smoke:
        args.switches, args.ticks, args.rounds, args.duration, args.interval = 20_000, 2, 1, 1, 1.0
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--locked", "--bins"], cwd=REPO, check=True)
    bench.ensure_wrk()
    ds_bin = os.path.join(args.bin_dir, "data_server")
    ms_bin = os.path.join(args.bin_dir, "metrics_server")
    with tempfile.TemporaryDirectory() as tmp:
        lua = os.path.join(tmp, "report.lua")
        with open(lua, "w") as f:
            f.write(bench.LUA)
        big = Server(ds_bin, ["--switches", str(args.switches), "--interval-sec", str(args.interval)],
                     os.path.join(tmp, "ds-big.log"))
        urls = ",".join(f"http://{big.url_addr}/counters?num_shards={SHARDS}&shard={k}" for k in range(SHARDS))
        sharded = Server(ms_bin, ["--upstream-urls", urls, "--poll-ms", "200"], os.path.join(tmp, "ms-big.log"))
        small = Server(ds_bin, ["--switches", "64", "--interval-sec", "3600"], os.path.join(tmp, "ds-64.log"))
        single = Server(ms_bin, ["--upstream-url", f"http://{small.url_addr}/counters", "--poll-ms", "200"],
                        os.path.join(tmp, "ms-64.log"))
        try:
            for ms in (sharded, single):
                wait("readiness", lambda: _ok(ms.url_addr), 120 + args.interval * 3)
            lags, rss = tick_lags(big, sharded, args.ticks, args.interval)
            path = "/telemetry/GetMetric?switch_id=sw-000&metric=cpu_util_pct"
            runs = {"sharded": [], "single": []}
            for i in range(args.rounds):
                for name, ms in (("sharded", sharded), ("single", single)):
                    r = bench.run_wrk(f"http://{ms.url_addr}{path}", 100, args.duration, False, lua)
                    runs[name].append(r)
                    print(f"GetMetric c100 {name} #{i + 1}: {r['rps']:.0f} req/s, "
                          f"p99 {r['p99_ms']:.2f} ms, errors {r['errors']}", flush=True)
            rss = max(rss, sharded.rss_mb())
            ticks = figures(big.lines, "gen.tick", "duration_ms")
            parse = figures(sharded.lines, "poll.run", "parse_ms")
            fetch = figures(sharded.lines, "poll.run", "fetch_ms")
        finally:
            for s in (single, small, sharded, big):
                s.stop()
    med = {k: statistics.median(r["rps"] for r in v) for k, v in runs.items()}
    ratio = med["sharded"] / med["single"] if med["single"] else 0.0
    rows = [
        ("switches", f"{args.switches:,} as {SHARDS} shards of one data_server; tick every {args.interval:g} s"),
        ("lag, X-Snapshot-Ts to every shard served (ms)",
         ", ".join(f"{l:.0f}" for l in lags) + f" (max {max(lags):.0f}; target < 1000)"),
        ("metrics_server RSS, max (MB)", f"{rss:.0f} (target <= 400)"),
        ("producer tick (ms), median / max", f"{statistics.median(ticks):.0f} / {max(ticks):.0f}"),
        ("shard parse (ms), median / max", f"{statistics.median(parse):.1f} / {max(parse):.1f} (n={len(parse)})"),
        ("shard fetch (ms), median / max", f"{statistics.median(fetch):.1f} / {max(fetch):.1f}"),
        ("GetMetric c100 req/s, sharded / single (medians)",
         f"{med['sharded']:.0f} / {med['single']:.0f} = {ratio:.2f} (target >= 0.90)"),
    ]
    md = "| figure | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)
    print(md)
    if args.smoke:
        return 0
    section = (f"{BEGIN}\n## A million switches in 16 shards (issue 11, item 6)\n\n"
               f"`python3 scripts/bench_shards.py` on {time.strftime('%Y-%m-%d')}, release build, "
               f"{args.ticks} ticks, GetMetric {args.rounds} x {args.duration} s per side, alternating.\n\n"
               f"{md}\n{END}")
    write_section(args.out, BEGIN, END, section)
    print(f"bench_shards: wrote {args.out}")
    return 0


def _ok(addr: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{addr}/ready", timeout=30) as r:
            return r.status == 200
    except OSError:
        return False


if __name__ == "__main__":
    sys.exit(main())
