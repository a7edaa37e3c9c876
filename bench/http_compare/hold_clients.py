#!/usr/bin/env python3
"""Holds idle and slow-drip connections open against an HTTP server (for
bench/compare_http_servers.sh).

  hold_clients.py HOST PORT IDLE DRIP READY_FILE STATS_FILE

IDLE connections connect and send nothing; DRIP connections send one byte of an endless
request header per second ("GET /small HTTP/1.1\\r\\nX-Drip: aaaa..."). A connection the
server closes is counted and opened again at once, so IDLE + DRIP stay held for the whole
run (both servers close a connection after 10 s). READY_FILE is written once all are
open; on SIGTERM the counts go to STATS_FILE as "idle_closed=N drip_closed=N
connect_failed=N" and the script exits.
"""
import selectors
import signal
import socket
import sys
import time

host, port = sys.argv[1], int(sys.argv[2])
n_idle, n_drip = int(sys.argv[3]), int(sys.argv[4])
ready_file, stats_file = sys.argv[5], sys.argv[6]
PREFIX = b"GET /small HTTP/1.1\r\nX-Drip: "

sel = selectors.DefaultSelector()
stats = {"idle_closed": 0, "drip_closed": 0, "connect_failed": 0}
drips = {}  # socket -> bytes sent so far
pending = []  # kinds waiting to be (re)opened


def open_one(kind):
    try:
        s = socket.create_connection((host, port), timeout=2)
    except OSError:
        stats["connect_failed"] += 1
        pending.append(kind)
        return
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ, kind)
    if kind == "drip":
        drips[s] = 0


def closed(s, kind):
    sel.unregister(s)
    drips.pop(s, None)
    s.close()
    stats[kind + "_closed"] += 1
    pending.append(kind)


def stop(*_):
    with open(stats_file, "w") as f:
        f.write(" ".join(f"{k}={v}" for k, v in stats.items()) + "\n")
    sys.exit(0)


signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
for _ in range(n_idle):
    open_one("idle")
for _ in range(n_drip):
    open_one("drip")
with open(ready_file, "w") as f:
    f.write("ready\n")

next_drip = time.monotonic()
while True:
    timeout = max(0.0, next_drip - time.monotonic())
    for key, _ in sel.select(timeout):
        s, kind = key.fileobj, key.data
        try:
            data = s.recv(65536)
        except OSError:
            data = b""
        if not data:  # the server closed it (it may have sent a 408/431 first)
            closed(s, kind)
    if time.monotonic() >= next_drip:
        next_drip += 1.0
        for s in list(drips):
            i = drips[s]
            byte = PREFIX[i:i + 1] if i < len(PREFIX) else b"a"
            try:
                s.send(byte)
                drips[s] = i + 1
            except OSError:
                closed(s, "drip")
    while pending:
        before = len(pending)
        open_one(pending.pop(0))
        if len(pending) >= before:  # connect failed: try again on the next tick
            break
