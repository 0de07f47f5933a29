"""Language-server benchmark: keystroke -> published diagnostics, and memory over many edits.

    python benchmarks/lsp.py [--edits 40] [--rss-edits 1000]

Starts the real server (`python -m mcpdsl lsp`) and talks to it over stdio
like an editor: initialize with the tree as workspace folder, open one file,
then send single-character incremental edits that alternately break and
repair a keyword (so that every edit changes the diagnostics and a publish
follows it).  The latency of an edit is the wall time from writing the
`didChange` to reading the `publishDiagnostics` of that file, the server's
debounce included.  Trees: `policies/` and the 100-file, 10,000-rule tree of
the front-end benchmark.  RSS is the server's resident set size (VmRSS) after
10 and after `--rss-edits` edits, on both trees.  Numbers are wall-clock on
this machine; prints markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


class Client:
    """A minimal JSON-RPC client over the server's stdin/stdout."""

    def __init__(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mcpdsl", "lsp"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        self.messages: queue.Queue[dict[str, Any]] = queue.Queue()
        self.next_id = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        out = self.proc.stdout
        assert out is not None
        while True:
            length = 0
            while True:
                line = out.readline()
                if not line:
                    return
                if line in (b"\r\n", b"\n"):
                    break
                name, _, value = line.decode("ascii").partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            self.messages.put(json.loads(out.read(length)))

    def send(self, method: str, params: Any, *, request: bool = False) -> int | None:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params}
        ident = None
        if request:
            self.next_id += 1
            ident = message["id"] = self.next_id
        body = json.dumps(message).encode("utf-8")
        stdin = self.proc.stdin
        assert stdin is not None
        stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        stdin.flush()
        return ident

    def wait(self, predicate, timeout: float = 120.0) -> dict[str, Any]:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while True:
            message = self.messages.get(timeout=max(0.01, deadline - time.monotonic()))
            if predicate(message):
                return message

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def close(self) -> None:
        ident = self.send("shutdown", None, request=True)
        self.wait(lambda m: m.get("id") == ident, timeout=30)
        self.send("exit", None)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:  # report it, but do not leave the process behind
            print(
                f"note: server {self.proc.pid} did not exit within 60 s of `exit`", file=sys.stderr
            )
            self.proc.kill()
            self.proc.wait()


def session(tree: Path, file: Path) -> tuple[Client, str, str]:
    client = Client()
    ident = client.send(
        "initialize",
        {
            "processId": os.getpid(),
            "rootUri": tree.as_uri(),
            "capabilities": {},
            "workspaceFolders": [{"uri": tree.as_uri(), "name": tree.name}],
        },
        request=True,
    )
    client.wait(lambda m: m.get("id") == ident)
    client.send("initialized", {})
    uri = file.as_uri()
    text = file.read_text()
    client.send(
        "textDocument/didOpen",
        {"textDocument": {"uri": uri, "languageId": "mcp", "version": 1, "text": text}},
    )
    client.wait(_published(uri))
    return client, uri, text


def _published(uri: str):  # type: ignore[no-untyped-def]
    return lambda m: (
        m.get("method") == "textDocument/publishDiagnostics" and m["params"]["uri"] == uri
    )


def keystrokes(
    client: Client, uri: str, text: str, keyword: str, count: int, start: int = 2
) -> list[float]:
    """Latencies (ms) of `count` one-character edits toggling the last letter of `keyword`."""
    at = text.index(keyword + " ") + len(keyword) - 1
    line = text.count("\n", 0, at)
    character = at - (text.rfind("\n", 0, at) + 1)
    original, broken = keyword[-1], "x" if keyword[-1] != "x" else "y"
    times = []
    for i in range(count):
        new = broken if i % 2 == 0 else original
        edit = {
            "range": {
                "start": {"line": line, "character": character},
                "end": {"line": line, "character": character + 1},
            },
            "text": new,
        }
        begin = time.perf_counter()
        client.send(
            "textDocument/didChange",
            {"textDocument": {"uri": uri, "version": start + i}, "contentChanges": [edit]},
        )
        client.wait(_published(uri))
        times.append((time.perf_counter() - begin) * 1000)
    return times


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--edits", type=int, default=40)
    parser.add_argument("--rss-edits", type=int, default=1000)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from frontend import generate

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        policies = work / "policies"
        shutil.copytree(ROOT / "policies", policies)
        generated = work / "generated"
        generated.mkdir()
        generate(generated)
        rows = []
        for name, tree, file, keyword, goal in (
            ("`policies/`", policies, policies / "services.mcp", "image", 50),
            ("generated", generated, generated / "policy_000.mcp", "default", 150),
        ):
            client, uri, text = session(tree, file)
            times = sorted(keystrokes(client, uri, text, keyword, args.edits))
            client.close()
            files = len(list(tree.rglob("*.mcp")))
            p50 = statistics.median(times)
            p90 = times[int(len(times) * 0.9) - 1]
            rows.append(
                f"| {name} | {files} | {len(times)} | {p50:,.0f} (goal ≤ {goal}) |"
                f" {p90:,.0f} | {times[-1]:,.0f} |"
            )
        print("| tree | files | edits | keystroke → diagnostics p50 ms | p90 ms | max ms |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        print("\n".join(rows), flush=True)

        print()
        print(
            f"| tree | server RSS after 10 edits MiB | after {args.rss_edits:,} edits MiB | growth |"
        )
        print("| --- | ---: | ---: | ---: |")
        for name, tree, file, keyword in (
            ("`policies/`", policies, policies / "services.mcp", "image"),
            ("generated", generated, generated / "policy_000.mcp", "default"),
        ):
            client, uri, text = session(tree, file)
            keystrokes(client, uri, text, keyword, 10)
            after_10 = client.rss_kib()
            keystrokes(client, uri, text, keyword, args.rss_edits - 10, start=12)
            after_n = client.rss_kib()
            client.close()
            growth = (after_n - after_10) / after_10 * 100
            print(
                f"| {name} | {after_10 / 1024:,.1f} | {after_n / 1024:,.1f} | {growth:+.1f}% |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
