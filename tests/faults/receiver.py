#!/usr/bin/env python3
"""A loopback webhook receiver for the fault scripts (tests/faults/*.sh).

Listens on 127.0.0.1:PORT (0: any free port, written to --port-file), answers every POST
with 200 and appends one line per request to --log: "<path> <Idempotency-Key> <rule>
<state>" (the key "-" when missing), flushed before the answer is sent, so a line in the
log is a delivery rollguard saw succeed. Ends on SIGTERM.
"""
import argparse
import json
import os
import random
import signal
import time
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--log", required=True)
    ap.add_argument("--delay-ms", type=int, default=0)
    args = ap.parse_args()
    log = open(args.log, "a", buffering=1)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            n = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(n)
            rule = state = "-"
            try:
                doc = json.loads(body)
                rule = str(doc.get("rule", "-")).replace(" ", "_")
                state = str(doc.get("state", "-")).replace(" ", "_")
            except ValueError:
                pass
            key = self.headers.get("Idempotency-Key", "-")
            log.write(f"{self.path} {key} {rule} {state}\n")
            log.flush()
            os.fsync(log.fileno())
            if args.delay_ms > 0:
                time.sleep(random.randint(0, args.delay_ms) / 1000.0)
            try:
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
            except (BrokenPipeError, ConnectionResetError):
                pass  # the sender was killed while waiting: the delivery is logged all the same

        def log_message(self, *a):
            pass

    server = HTTPServer(("127.0.0.1", args.port), Handler)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{server.server_address[1]}\n")
        os.rename(tmp, args.port_file)
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
