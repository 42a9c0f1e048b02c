"""What the benchmark scripts share: a server started on port 0 whose NDJSON
log is kept, and BENCHMARKS.md sections (each script owns the text between
its own pair of markers and rewrites only that, so one run never erases
another's figures)."""

import json
import os
import subprocess
import sys
import threading


class Server:
    """A binary on 127.0.0.1:0 with a clean environment; `addr` is
    ("127.0.0.1", port) from its startup line, `lines` every NDJSON line."""

    def __init__(self, path: str, args: list[str], log: str):
        self.log = open(log, "wb")
        self.lines: list[dict] = []
        self.proc = subprocess.Popen([path, "--host", "127.0.0.1", "--port", "0", *args],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self.log, env={})
        self.addr = None
        ready = threading.Event()

        def pump():
            for raw in self.proc.stdout:
                self.log.write(raw)
                try:
                    line = json.loads(raw)
                except ValueError:
                    continue
                self.lines.append(line)
                if line.get("event") == "startup" and self.addr is None:
                    self.addr = ("127.0.0.1", int(line["addr"].rpartition(":")[2]))
                    ready.set()

        threading.Thread(target=pump, daemon=True).start()
        if not ready.wait(60):
            self.stop()
            sys.exit(f"{os.path.basename(path)} did not start (log: {log})")

    @property
    def url_addr(self) -> str:
        """host:port, for URLs."""
        return f"{self.addr[0]}:{self.addr[1]}"

    def rss_mb(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def write_section(path: str, begin: str, end: str, section: str) -> None:
    """Puts `section` (which starts with `begin` and ends with `end`) in
    place of the old one in `path`, or at its end if there is none."""
    text = open(path).read() if os.path.exists(path) else ""
    if begin in text and end in text:
        text = text[:text.index(begin)] + section + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    with open(path, "w") as f:
        f.write(text)
