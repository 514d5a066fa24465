#!/usr/bin/env python3
"""Resource attacks on `ao-cu serve` over loopback, with a victim client measured while each runs.

Not a test (no assertions on speed): it prints, per attack, what the node held (open connections, refused
connections, upload bytes held, resident memory) and how long the victim's requests took meanwhile.

    python3 bench/http/attack.py [--binary target/release/ao-cu] [--idle 20000] [--uploads 20]

Attacks (docs/security.md records the figures):
  idle-one-peer   N idle TCP connections from 127.0.0.1 (the per-peer cap holds 1,024; the rest are closed)
  idle-many-peers the same N spread over 20 loopback source addresses, against a node run with
                  --max-connections 4096 (the global cap; the listener stops accepting beyond it)
  half-headers    1,000 connections that send half a request head and stall (closed at the header timeout)
  stalled-uploads K uploads declaring 60 MB, sending 50 MB and stalling (the upload budget, 512 MiB by
                  default, holds what fits; the rest are 503; all are cut off at the body deadline)
  load-1000       wrk with 1,000 connections on GET /healthcheck and GET /result (0 errors expected)

Everything targets 127.0.0.0/8 only and stops by itself.
"""

import argparse
import asyncio
import http.client
import json
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def metrics(url):
    # From the victim's address: the attacker's own address may be at its connection cap.
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30, source_address=("127.0.0.250", 0))
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    out = {}
    for name in [
        "ao_cu_http_connections_open",
        "ao_cu_http_connections_refused_total",
        "ao_cu_http_connections_accepted_total",
        "ao_cu_http_upload_bytes_held",
    ]:
        m = re.search(rf"^{name} (\d+)", text, re.M)
        out[name.replace("ao_cu_http_", "")] = int(m.group(1)) if m else None
    return out


class Node:
    def __init__(self, binary, extra):
        self.dir = tempfile.mkdtemp(prefix="ao-cu-attack-")
        self.proc = subprocess.Popen(
            [binary, "serve", "--host", "127.0.0.1", "--port", "0", "--data-dir", f"{self.dir}/data", *extra],
            stdout=subprocess.PIPE,
            stderr=open(f"{self.dir}/serve.err", "w"),
            text=True,
        )
        line = self.proc.stdout.readline()
        m = re.search(r"listening on ([0-9.]+):(\d+)", line)
        if not m:
            raise SystemExit(f"ao-cu serve did not start: {line!r}")
        self.host, self.port = m.group(1), int(m.group(2))
        self.url = f"http://{self.host}:{self.port}"

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


async def victim(node, seconds, path="/healthcheck"):
    """New connection per request (what a fresh client does); latencies in ms, and errors."""
    lat, errors = [], 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t = time.monotonic()
        try:
            # From an address of its own: the victim is another client, not one of the attacker's sockets.
            r, w = await asyncio.wait_for(
                asyncio.open_connection(node.host, node.port, local_addr=("127.0.0.250", 0)), 10
            )
            w.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            await w.drain()
            data = await asyncio.wait_for(r.read(), 10)
            w.close()
            if not data.startswith(b"HTTP/1.1 200"):
                errors += 1
            else:
                lat.append((time.monotonic() - t) * 1000)
        except Exception:
            errors += 1
        await asyncio.sleep(0.05)
    lat.sort()
    pick = lambda q: round(lat[min(len(lat) - 1, int(q * len(lat)))], 1) if lat else None
    return {"victim_requests": len(lat), "victim_errors": errors, "victim_p50_ms": pick(0.5), "victim_max_ms": pick(1.0)}


async def hold(node, n, sources, payload=b""):
    socks = []
    for i in range(n):
        src = sources[i % len(sources)]
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.bind((src, 0))
            await asyncio.wait_for(asyncio.get_running_loop().sock_connect(s, (node.host, node.port)), 5)
            if payload:
                await asyncio.get_running_loop().sock_sendall(s, payload)
            socks.append(s)
        except Exception:
            s.close()
    return socks


def alive(socks):
    """How many of the attacker's sockets the server still holds open."""
    n = 0
    for s in socks:
        try:
            data = s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            if data:
                n += 1
        except BlockingIOError:
            n += 1
        except OSError:
            pass
    return n


async def idle_attack(node, n, sources, label, payload=b""):
    before = rss_mib(node.proc.pid)
    t = time.monotonic()
    socks = await hold(node, n, sources, payload)
    opened = time.monotonic() - t
    row = {
        "attack": label,
        "attempted": n,
        "connected": len(socks),
        "held_by_server": alive(socks),
        **metrics(node.url),
        "rss_before_mib": round(before, 1),
        "rss_during_mib": round(rss_mib(node.proc.pid), 1),
        "open_s": round(opened, 1),
    }
    row.update(await victim(node, 5))
    # Wait for the header timeout to close them.
    await asyncio.sleep(node_header_timeout_s + 2)
    row["held_after_timeout"] = alive(socks)
    for s in socks:
        s.close()
    print(json.dumps(row), flush=True)


async def upload_attack(node, k):
    before = rss_mib(node.proc.pid)
    head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 60000000\r\n\r\n"
    chunk = b"\0" * (1 << 20)
    statuses = []

    async def one():
        r, w = await asyncio.open_connection(node.host, node.port)
        w.write(head)
        try:
            for _ in range(50):
                w.write(chunk)
                await asyncio.wait_for(w.drain(), 30)
        except Exception:
            pass
        try:
            data = await asyncio.wait_for(r.read(64), 120)
            statuses.append(data[9:12].decode(errors="replace") if data else "closed")
        except Exception:
            # Refused while still sending: the node answered 503 and closed without reading the body.
            statuses.append("reset")
        w.close()

    tasks = [asyncio.create_task(one()) for _ in range(k)]
    await asyncio.sleep(8)
    during = {**metrics(node.url), "rss_during_mib": round(rss_mib(node.proc.pid), 1)}
    v = await victim(node, 5)
    await asyncio.gather(*tasks, return_exceptions=True)
    after = metrics(node.url)
    counts = {s: statuses.count(s) for s in sorted(set(statuses))}
    print(json.dumps({"attack": "stalled-uploads", "uploads": k, "answers": counts, "rss_before_mib": round(before, 1), **during, "upload_bytes_held_after": after["upload_bytes_held"], **v}), flush=True)


def load(node, work):
    # Processes and results to read: the ingest benchmark registers the Lua module and posts 200 messages.
    subprocess.run(
        ["node", f"{REPO}/bench/http/bench.mjs", "ingest", node.url, f"{REPO}/tests/modules/build/lua-process.wasm", "200", "8", work],
        check=True, stdout=subprocess.DEVNULL,
    )
    for label, args in [
        ("load-1000 GET /healthcheck", [f"{node.url}/healthcheck"]),
        ("load-1000 GET /result", ["-s", f"{REPO}/bench/http/result.lua", node.url]),
    ]:
        peak = [0.0]
        env = dict(os.environ, PATHS=f"{work}/paths.txt")
        p = subprocess.Popen(["wrk", "-t2", "-c1000", "-d10s", "--timeout", "10s", "--latency", *args], stdout=subprocess.PIPE, text=True, env=env)
        while p.poll() is None:
            peak[0] = max(peak[0], rss_mib(node.proc.pid))
            time.sleep(0.2)
        out = p.stdout.read()
        rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
        errs = re.search(r"Socket errors: (.*)", out)
        non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        p99 = re.search(r"99%\s+([\d.]+\w+)", out)
        print(json.dumps({"attack": label, "req_per_s": float(rps.group(1)) if rps else None, "p99": p99.group(1) if p99 else None,
                          "socket_errors": errs.group(1) if errs else "none", "non_2xx": int(non2xx.group(1)) if non2xx else 0,
                          "rss_peak_mib": round(peak[0], 1)}), flush=True)


node_header_timeout_s = 20


async def main():
    global node_header_timeout_s
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=f"{REPO}/target/release/ao-cu")
    ap.add_argument("--idle", type=int, default=20000)
    ap.add_argument("--uploads", type=int, default=20)
    ap.add_argument("--header-timeout-s", type=int, default=20)
    ap.add_argument("--skip", default="", help="comma-separated attacks to skip")
    a = ap.parse_args()
    node_header_timeout_s = a.header_timeout_s
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    skip = set(a.skip.split(","))
    timeout = ["--header-timeout-ms", str(a.header_timeout_s * 1000)]
    # The attacker shares this machine's descriptor limit with the node: it leaves room for the node.
    budget_fds = max(1000, hard - 2000)
    idle = min(a.idle, budget_fds)
    node = Node(a.binary, timeout)
    try:
        if "idle-one-peer" not in skip:
            await idle_attack(node, idle, ["127.0.0.1"], "idle-one-peer")
        if "half-headers" not in skip:
            await idle_attack(node, 1000, [f"127.0.0.{i}" for i in range(2, 12)], "half-headers", b"GET / HTTP/1.1\r\nHost:")
        if "stalled-uploads" not in skip:
            await upload_attack(node, a.uploads)
        if "load-1000" not in skip:
            with tempfile.TemporaryDirectory() as work:
                load(node, work)
    finally:
        node.stop()
    if "idle-many-peers" not in skip:
        node = Node(a.binary, timeout + ["--max-connections", "4096"])
        try:
            await idle_attack(node, idle, [f"127.0.1.{i}" for i in range(1, 21)], "idle-many-peers (--max-connections 4096)")
        finally:
            node.stop()


if __name__ == "__main__":
    asyncio.run(main())
