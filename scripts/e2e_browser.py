#!/usr/bin/env python3
"""The live page (`GET /`) in a real browser (`make e2e-browser`).

Starts data_server (10,000 switches, a new snapshot every 2 s) and
metrics_server (polling every 200 ms) from BIN_DIR on 127.0.0.1 and free
ports, then drives headless Chromium through chromedriver (W3C WebDriver
over plain HTTP, standard library only) and checks that:

  - the page draws one heatmap cell per switch (data-cells = data-switches
    = ListMetrics' total) and the redraw of 10,000 switches takes < 50 ms
    (median of the redraws timed by the page itself; the figure is printed);
  - hovering sw-000's cell (a real pointer move) shows sw-000 and every
    value GetMetric gives for it in the same snapshot;
  - the snapshot id on the page changes after a producer tick, without a
    reload;
  - clicking sw-000 draws a sparkline with as many points as
    /telemetry/History returns;
  - the prefix box filters the switches (as ListMetrics' switch_prefix does);
  - the status bar says live, the age is green, the upstream chip is there,
    and over two shards a chip for each;
  - no console errors (SEVERE);
  - when metrics_server goes away the page says "reconnecting…", and when it
    is back on the same port the page is live again with new data;
  - with METRICS_AUTH_TOKEN set (a second metrics_server), the page asks for
    the token, takes it from the form, then shows data; the token is in
    sessionStorage only, never in the URL or the server's log; the only
    console errors are the 401s before it was given;
  - over HTTPS (a third metrics_server with TLS_CERT_FILE, a certificate
    made here by `openssl`, accepted as the test's), the page shows the
    fleet, goes live and follows new snapshots over the stream, without
    console errors.

Saves a screenshot to target/e2e/page.png. Installs Debian's chromium and
chromium-driver when /usr/bin/chromium or /usr/bin/chromedriver is missing.
Every wait is bounded; everything started is stopped on exit. Exit 0 = all
checks pass.

    scripts/e2e_browser.py [--bin-dir DIR] [--switches N] [--screenshot PATH]
"""

import argparse
import base64
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
TOKEN = "e2e-browser-t0ken-9f3c"
REDRAW_BUDGET_MS = 50.0
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"   # W3C WebDriver element key


def say(msg):
    print(f"e2e_browser: {msg}", file=sys.stderr, flush=True)


class Failed(Exception):
    pass


# ----------------------------------------------------------------- processes

class Procs:
    """Everything started, stopped (SIGTERM, then SIGKILL) on exit."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.procs = []

    def start(self, name, argv, env=None):
        out = open(os.path.join(self.tmp, name + ".log"), "wb")
        err = open(os.path.join(self.tmp, name + ".err"), "wb")
        p = subprocess.Popen(argv, stdout=out, stderr=err, env=env or {},
                             stdin=subprocess.DEVNULL)
        p.log_name = name
        self.procs.append(p)
        return p

    def stop(self, p):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)

    def stop_all(self):
        for p in reversed(self.procs):
            try:
                self.stop(p)
            except Exception:
                pass

    def tail(self, name, n=5):
        for ext in (".err", ".log"):
            path = os.path.join(self.tmp, name + ext)
            if os.path.exists(path) and os.path.getsize(path):
                with open(path, "rb") as f:
                    lines = f.read().decode("utf-8", "replace").splitlines()[-n:]
                say(f"--- tail of {name}{ext}")
                for line in lines:
                    print("    " + line, file=sys.stderr)


def start_server(procs, bin_dir, name, args, env=None, log=None, port=0):
    """Starts bin_dir/name on 127.0.0.1:port; returns (proc, "host:port") from
    its NDJSON `startup` line."""
    log = log or name
    p = procs.start(log, [os.path.join(bin_dir, name), "--host", "127.0.0.1",
                          "--port", str(port)] + args, env=env)
    path = os.path.join(procs.tmp, log + ".log")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with open(path, "rb") as f:
            for line in f:
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                if ev.get("event") == "startup" and ev.get("addr"):
                    return p, ev["addr"]
        if p.poll() is not None:
            break
        time.sleep(0.05)
    procs.tail(log)
    raise Failed(f"{log} did not start")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ----------------------------------------------------------------- HTTP

def http(method, url, body=None, headers=None, timeout=30):
    """(status, parsed JSON or text) of one request."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode("utf-8", "replace")


def api(ms, path, token=None):
    headers = {"Authorization": "Bearer " + token} if token else {}
    return http("GET", f"http://{ms}{path}", headers=headers, timeout=10)


def until(what, fn, timeout, step=0.2):
    """fn()'s first truthy value within timeout seconds, else Failed(what)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = fn()
        except Failed:
            raise
        except Exception as e:  # a transient error: try again
            last = e
        if last and not isinstance(last, Exception):
            return last
        if time.monotonic() >= deadline:
            raise Failed(f"{what} (after {timeout:.0f} s; last: {last!r})")
        time.sleep(step)


# ----------------------------------------------------------------- WebDriver

class Browser:
    """One chromedriver session on headless Chromium."""

    def __init__(self, driver, profile, accept_insecure_certs=False):
        self.driver = driver
        caps = {
            "browserName": "chrome",
            # For the TLS check: a certificate made by the test, for 127.0.0.1.
            "acceptInsecureCerts": accept_insecure_certs,
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-quic", "--no-first-run",
                         "--disable-background-networking",
                         "--disable-component-update", "--disable-sync",
                         "--disable-dev-shm-usage", "--window-size=1280,800",
                         "--user-data-dir=" + profile],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        }
        status, r = http("POST", driver + "/session",
                         {"capabilities": {"alwaysMatch": caps}}, timeout=60)
        if status != 200:
            raise Failed(f"chromedriver could not start a session: {status} {r}")
        self.sid = r["value"]["sessionId"]
        self.cmd("POST", "/timeouts", {"script": 10000, "pageLoad": 20000, "implicit": 0})
        # A 1280x800 viewport: the window is that plus the browser's own bars.
        w, h = self.js("return [window.innerWidth, window.innerHeight];")
        rect = self.cmd("GET", "/window/rect")
        self.cmd("POST", "/window/rect", {"width": rect["width"] + 1280 - w,
                                          "height": rect["height"] + 800 - h})

    def cmd(self, method, path, body=None):
        status, r = http(method, f"{self.driver}/session/{self.sid}{path}", body)
        if status != 200:
            raise Failed(f"WebDriver {method} {path}: {status} {r}")
        return r["value"]

    def quit(self):
        try:
            http("DELETE", f"{self.driver}/session/{self.sid}", timeout=15)
        except Exception:
            pass

    def go(self, url):
        self.cmd("POST", "/url", {"url": url})

    def js(self, script, *args):
        return self.cmd("POST", "/execute/sync", {"script": script, "args": list(args)})

    def attr(self, name):
        return self.js("return document.body.dataset[arguments[0]] || '';", name)

    def element(self, css):
        found = self.cmd("POST", "/element", {"using": "css selector", "value": css})
        if ELEMENT not in found:
            raise Failed(f"no element {css}: {found}")
        return found[ELEMENT]

    def pointer(self, x, y, click=False):
        acts = [{"type": "pointerMove", "duration": 0, "x": int(x), "y": int(y),
                 "origin": "viewport"}]
        if click:
            acts += [{"type": "pointerDown", "button": 0}, {"type": "pointerUp", "button": 0}]
        self.cmd("POST", "/actions", {"actions": [{
            "type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"},
            "actions": acts}]})

    def console(self):
        """The browser's console entries since the last call."""
        for path in ("/se/log", "/log"):
            status, r = http("POST", f"{self.driver}/session/{self.sid}{path}",
                             {"type": "browser"})
            if status == 200:
                return r["value"]
        raise Failed("chromedriver gives no browser log")

    def screenshot(self, path):
        png = base64.b64decode(self.cmd("GET", "/screenshot"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(png)


def severe(entries):
    return [e for e in entries if e.get("level") == "SEVERE"]


# ----------------------------------------------------------------- checks

class Checks:
    def __init__(self):
        self.passed = self.failed = 0

    def check(self, name, ok, detail):
        if ok:
            self.passed += 1
            print(f"  ok    {name:<30} {detail}", flush=True)
        else:
            self.failed += 1
            print(f"  FAIL  {name:<30} {detail}", flush=True)

    def run(self, name, fn):
        """fn() returns (ok, detail); a Failed in it is a failed check."""
        try:
            ok, detail = fn()
        except Failed as e:
            ok, detail = False, str(e)
        self.check(name, ok, detail)
        return ok


def hover_values(b, ms):
    """Hovers sw-000's cell; returns (ok, detail) comparing the tooltip with
    GetMetric for every field, in the same snapshot."""
    centre = until("a cell for sw-000", lambda: b.js("return window.fabricPage.cellCentre('sw-000');"), 10)
    b.pointer(centre["x"], centre["y"])
    until("the tooltip for sw-000", lambda: b.attr("hoverSwitch") == "sw-000", 5)
    for _ in range(10):
        tip, snap = b.js("return [document.getElementById('tip').textContent,"
                         " document.body.dataset.snapshotId];")
        lines = tip.split("\n")
        shown = {}
        for line in lines[1:]:
            field, _, rest = line.partition(": ")
            shown[field] = rest.split(" ")[0]
        fields = api(ms, "/telemetry/ListMetrics?limit=1")[1]["fields"]
        got, snaps = {}, set()
        for f in fields:
            status, r = api(ms, "/telemetry/GetMetric?" + urllib.parse.urlencode(
                {"switch_id": "sw-000", "metric": f}))
            if status != 200:
                return False, f"GetMetric {f}: {status} {r}"
            got[f] = r["value"]
            snaps.add(r["snapshot_id"])
        if snaps != {snap}:
            time.sleep(0.3)      # a tick in between: read both again
            continue
        bad = [f for f in fields if f not in shown or float(shown[f]) != float(got[f])]
        ok = lines[0] == "sw-000" and not bad and set(shown) == set(fields)
        return ok, (f"{len(fields)} values equal GetMetric's (snapshot {snap})" if ok
                    else f"title {lines[0]!r}, differ: {bad}, page {shown}, api {got}")
    return False, "the page and GetMetric never showed the same snapshot"


def sparkline(b, ms, checks):
    """Clicks sw-000; compares the sparkline with /telemetry/History."""
    centre = b.js("return window.fabricPage.cellCentre('sw-000');")
    b.pointer(centre["x"], centre["y"], click=True)
    until("the sparkline request for sw-000",
          lambda: b.attr("sparkSwitch") == "sw-000" and b.attr("sparkState") != "none", 10)
    metric = b.js("return document.getElementById('metric').value;")
    q = urllib.parse.urlencode({"switch_id": "sw-000", "metric": metric})
    # History grows a point per snapshot: compare while both describe the same one.
    for _ in range(25):
        status, r = api(ms, "/telemetry/History?" + q)
        want = len(r["points"]) if status == 200 else None
        page = int(b.attr("sparkPoints") or 0)
        if status == 200 and page == want and want > 0:
            checks.check("sparkline = History", True, f"{page} points on the page, {want} in History ({metric})")
            return
        time.sleep(0.4)
    checks.check("sparkline = History", False, f"page {b.attr('sparkPoints')} points, History {status} {want}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin-dir", default=os.path.join(
        os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target"), "release"))
    ap.add_argument("--switches", type=int, default=10000)
    ap.add_argument("--screenshot", default=os.path.join(ROOT, "target", "e2e", "page.png"))
    args = ap.parse_args()

    for b in ("data_server", "metrics_server"):
        if not os.access(os.path.join(args.bin_dir, b), os.X_OK):
            say(f"no {args.bin_dir}/{b} (build first)")
            return 2
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        say("installing chromium and chromium-driver (Debian packages)")
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        subprocess.run(sudo + ["apt-get", "update", "-qq"], check=True)
        subprocess.run(sudo + ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install",
                               "-y", "-qq", "chromium", "chromium-driver"], check=True,
                       stdout=subprocess.DEVNULL)

    tmp = tempfile.mkdtemp(prefix="e2e_browser.")
    procs = Procs(tmp)
    browsers = []
    checks = Checks()
    # Stop everything on SIGTERM too (SIGINT is KeyboardInterrupt).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
    try:
        _, ds = start_server(procs, args.bin_dir, "data_server",
                             ["--switches", str(args.switches), "--interval-sec", "2"])
        ms_proc, ms = start_server(procs, args.bin_dir, "metrics_server",
                                   ["--upstream-url", f"http://{ds}/counters", "--poll-ms", "200"])
        port = free_port()
        procs.start("chromedriver", [CHROMEDRIVER, f"--port={port}"],
                    env={"PATH": "/usr/bin:/bin", "HOME": tmp})
        driver = f"http://127.0.0.1:{port}"
        until("chromedriver ready", lambda: http("GET", driver + "/status", timeout=2)[1]["value"]["ready"], 20)
        until("metrics_server has the fleet",
              lambda: api(ms, "/telemetry/ListMetrics?limit=1")[1].get("total") == args.switches, 20)

        # --------------------------------------------------- the page, no token
        b = Browser(driver, os.path.join(tmp, "profile1"))
        browsers.append(b)
        b.go(f"http://{ms}/")
        b.js("window.__e2eNoReload = true;")
        until("the page shows the fleet", lambda: b.attr("switches") == str(args.switches), 30)

        def cells():
            total = api(ms, "/telemetry/ListMetrics?limit=1")[1]["total"]
            c, s = int(b.attr("cells")), int(b.attr("switches"))
            return c == s == total, f"{c} cells, {s} switches drawn, ListMetrics total {total}"
        checks.run("cell count = switch count", cells)

        checks.run("hover sw-000 = GetMetric", lambda: hover_values(b, ms))

        def new_snapshot():
            first = b.attr("snapshotId")
            second = until("a new snapshot id on the page",
                           lambda: (b.attr("snapshotId") or first) != first and b.attr("snapshotId"), 15)
            kept = b.js("return window.__e2eNoReload === true;")
            return kept, f"{first} -> {second}, " + ("no reload" if kept else "the page was reloaded")
        checks.run("live: snapshot id changes", new_snapshot)

        # The redraw: timed by the page at each snapshot, and forced a few times.
        def redraw():
            live = []
            for _ in range(3):
                seen = b.attr("snapshotId")
                until("another snapshot", lambda: b.attr("snapshotId") != seen, 15)
                live.append(float(b.attr("redrawMs")))
            forced = [b.js("return window.fabricPage.redraw();") for _ in range(15)]
            med = statistics.median(forced + live)
            parse = b.attr("parseMs")
            detail = (f"median {med:.1f} ms at {b.attr('switches')} switches (live {', '.join(f'{x:.1f}' for x in live)};"
                      f" forced min {min(forced):.1f} max {max(forced):.1f}; JSON.parse {parse} ms, not included)")
            print(f"e2e_browser: redraw {med:.1f} ms (median) at {b.attr('switches')} switches", flush=True)
            return med < REDRAW_BUDGET_MS, detail
        checks.run(f"redraw < {REDRAW_BUDGET_MS:.0f} ms", redraw)

        sparkline(b, ms, checks)

        def status_bar():
            live = b.js("return document.getElementById('liveText').textContent;")
            fresh = b.attr("freshness")
            chip = b.js("return document.getElementById('shards').textContent;")
            snap = b.js("return document.getElementById('snapId').textContent;")
            ok = live == "live" and fresh == "ok" and "closed" in chip and snap == b.attr("snapshotId")
            return ok, f"{live!r}, age {fresh}, chip {chip!r}, snapshot {snap}"
        checks.run("status bar", status_bar)

        # Hover again for the screenshot (the sparkline click moved nothing, but be sure).
        c = b.js("return window.fabricPage.cellCentre('sw-000');")
        b.pointer(c["x"], c["y"])
        time.sleep(0.3)
        b.screenshot(args.screenshot)
        say(f"screenshot: {os.path.relpath(args.screenshot, ROOT)}")

        def prefix():
            el = b.element("#prefix")
            b.cmd("POST", f"/element/{el}/value", {"text": "sw-00"})
            want = api(ms, "/telemetry/ListMetrics?switch_prefix=sw-00&limit=1")[1]["total"]
            got = until("the filter applied", lambda: b.attr("switches") == str(want) and b.attr("switches"), 5)
            top = b.js("return Array.from(document.querySelectorAll('#top tr:not([hidden])'), r => r.dataset.switchId);")
            ok = all(t.startswith("sw-00") for t in top) and len(top) == min(10, want)
            b.js("const p = document.getElementById('prefix'); p.value = '';"
                 " p.dispatchEvent(new Event('input'));")
            return ok, f"'sw-00': {got} switches drawn (switch_prefix total {want}), top 10 {len(top)} rows all matching"
        checks.run("prefix filter", prefix)

        def console_clean():
            bad = [e["message"] for e in severe(b.console())]
            return not bad, ("no console errors" if not bad else f"{len(bad)}: {bad[:3]}")
        checks.run("no console errors", console_clean)

        # Reconnect: metrics_server away, then back on the same port.
        def reconnect():
            procs.stop(ms_proc)
            state = until("the page says reconnecting",
                          lambda: b.attr("stream") == "reconnecting" and
                          b.js("return document.getElementById('liveText').textContent;"), 10)
            before = b.attr("snapshotId")
            start_server(procs, args.bin_dir, "metrics_server",
                         ["--upstream-url", f"http://{ds}/counters", "--poll-ms", "200"],
                         log="metrics_server_again", port=int(ms.rsplit(":", 1)[1]))
            until("live again", lambda: b.attr("stream") == "live", 25)
            after = until("a new snapshot after reconnecting", lambda: b.attr("snapshotId") != before and b.attr("snapshotId"), 15)
            b.console()   # the failed requests while it was away are expected
            return True, f"{state!r}, then live again ({before} -> {after})"
        checks.run("stream reconnects", reconnect)

        # Shards: the same fleet as two shards; the status bar has a chip each.
        _, ms_sharded = start_server(
            procs, args.bin_dir, "metrics_server",
            ["--upstream-urls", f"http://{ds}/counters?num_shards=2&shard=0,"
                                f"http://{ds}/counters?num_shards=2&shard=1", "--poll-ms", "200"],
            log="metrics_server_sharded")

        def shard_chips():
            b.go(f"http://{ms_sharded}/")
            until("the sharded fleet", lambda: b.attr("switches") == str(args.switches), 30)
            chips = until("a chip per shard", lambda: (lambda c: len(c) == 2 and c)(b.js(
                "return Array.from(document.querySelectorAll('#shards .chip'), c => c.textContent);")), 10)
            ok = all(" 0/2 " in c or " 1/2 " in c for c in chips) and all("closed" in c for c in chips)
            return ok, f"{chips}"
        checks.run("status bar: a chip per shard", shard_chips)
        b.quit()
        browsers.remove(b)

        # --------------------------------------------------- the token flow
        _, ms_auth = start_server(procs, args.bin_dir, "metrics_server",
                                  ["--upstream-url", f"http://{ds}/counters", "--poll-ms", "200"],
                                  env={"METRICS_AUTH_TOKEN": TOKEN}, log="metrics_server_auth")
        b = Browser(driver, os.path.join(tmp, "profile2"))
        browsers.append(b)

        def token_flow():
            b.go(f"http://{ms_auth}/")
            until("the page asks for the token",
                  lambda: b.attr("stream") == "auth" and b.js("return !document.getElementById('auth').hidden;"), 15)
            if b.attr("snapshotId"):
                return False, "data shown before the token was given"
            before = severe(b.console())
            b.cmd("POST", f"/element/{b.element('#token')}/value", {"text": TOKEN})
            b.cmd("POST", f"/element/{b.element('#authSubmit')}/click", {})
            until("data after the token", lambda: b.attr("switches") == str(args.switches) and b.attr("snapshotId"), 30)
            until("the status bar after the token", lambda: b.js("return document.getElementById('shards').textContent;"), 10)
            stored = b.js("return sessionStorage.getItem('fabric.token') === arguments[0] && localStorage.length === 0;", TOKEN)
            url = b.js("return location.href;")
            time.sleep(2.5)   # a /stats poll and a snapshot with the token
            after = severe(b.console())
            with open(os.path.join(tmp, "metrics_server_auth.log"), "rb") as f:
                leaked = TOKEN.encode() in f.read()
            not_401 = [e["message"] for e in before if "401" not in e.get("message", "")]
            ok = stored and TOKEN not in url and not leaked and not not_401 and not after
            return ok, (f"form shown, {len(before)} console 401s before the token, data after it, "
                        f"token in sessionStorage only" if ok else
                        f"stored {stored}, in url {TOKEN in url}, in log {leaked}, errors before {not_401[:2]}, after {[e['message'] for e in after][:2]}")
        checks.run("token flow (auth on)", token_flow)
        b.quit()
        browsers.remove(b)

        # ------------------------------------------------------ over HTTPS
        cert, key = os.path.join(tmp, "tls.pem"), os.path.join(tmp, "tls.key")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj", "/CN=e2e",
                        "-addext", "subjectAltName=IP:127.0.0.1",
                        "-addext", "basicConstraints=critical,CA:FALSE",
                        "-keyout", key, "-out", cert], check=True, capture_output=True)
        _, ms_tls = start_server(procs, args.bin_dir, "metrics_server",
                                 ["--upstream-url", f"http://{ds}/counters", "--poll-ms", "200",
                                  "--tls-cert-file", cert, "--tls-key-file", key],
                                 log="metrics_server_tls")
        b = Browser(driver, os.path.join(tmp, "profile3"), accept_insecure_certs=True)
        browsers.append(b)

        def over_https():
            b.go(f"https://{ms_tls}/")
            until("the fleet over HTTPS", lambda: b.attr("switches") == str(args.switches), 30)
            until("live over HTTPS", lambda: b.attr("stream") == "live", 15)
            first = b.attr("snapshotId")
            until("a new snapshot over the stream", lambda: b.attr("snapshotId") not in (first, None, ""), 15)
            proto = b.js("return location.protocol;")
            bad = [e["message"] for e in severe(b.console())]
            return proto == "https:" and not bad, f"{proto}, live, snapshots streamed, console errors: {bad[:2] or 'none'}"
        checks.run("page over HTTPS (TLS_CERT_FILE)", over_https)
    except Failed as e:
        checks.check("setup", False, str(e))
        for name in ("data_server", "metrics_server", "chromedriver"):
            procs.tail(name)
    finally:
        for b in browsers:
            b.quit()
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"e2e_browser: {checks.passed} passed, {checks.failed} failed")
    return 0 if checks.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
