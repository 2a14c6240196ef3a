#!/usr/bin/env python3
"""faultproxy.py - a faulty network between mi and the fake provider.

    python3 test/fake/faultproxy.py --upstream http://127.0.0.1:PORT
        [--port 0] [--rate 0.2] [--faults 500,reset,hang,truncate]
        [--on create,poll,download] [--hang-ms 30000] [--seed N]
        [--log FILE]

Every request is passed to the upstream (the fake provider) except when
a fault is drawn for it: at --rate, for the kinds of request in --on
(create: a POST or PUT; download: a GET of /files/ or a Veo file; poll:
any other GET), one of --faults at random:

    500       the proxy answers 500 with an HTML page itself; the request
              never reaches the provider
    reset     the request is passed on and answered, then the connection
              is reset (RST) before a byte of the answer is sent back
    hang      passed on and answered; the client gets nothing (creates
              and polls) or half of the body (downloads) and the
              connection stays open for --hang-ms, then closes
    truncate  passed on; the answer goes back with its full
              Content-Length but only half of its body, then the
              connection closes

So after reset, hang and truncate the provider has done what was asked
(a create made a job) while the client knows nothing of it.  Client
connections are kept alive as HTTP/1.1 allows.

Control (never faulted, never passed on):
    GET  /_faultproxy/stats   {"requests": {kind: n}, "faults": {kind:
                              {fault: n}}, "planned": n}
    POST /_faultproxy/plan    {"kind": "create", "fault": "reset",
                              "count": 1, "match": "text"}: the next
                              count requests of that kind (whose body
                              holds match, when given) get that fault,
                              whatever the rate
    POST /_faultproxy/rate    {"rate": 0.2}
    POST /_faultproxy/reset   zero the counters, forget the plans
Requests under /_fake/ are passed on untouched.  Prints "ready PORT"
once listening; runs until SIGTERM.  Python standard library only.
"""
import argparse
import http.client
import json
import random
import signal
import socket
import socketserver
import struct
import sys
import threading
import time
import urllib.parse

HTML_500 = (b"<!DOCTYPE html>\n<html><head><title>500 Internal Server Error"
            b"</title></head><body><center><h1>500 Internal Server Error</h1>"
            b"</center><hr><center>faultproxy</center></body></html>\n")
HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer",
       "upgrade", "proxy-connection", "content-length"}


class State:
    def __init__(self, args):
        self.lock = threading.Lock()
        self.rate = args.rate
        self.faults = [f for f in args.faults.split(",") if f]
        self.on = set(k for k in args.on.split(",") if k)
        self.hang_s = args.hang_ms / 1000.0
        self.rng = random.Random(args.seed)
        self.logf = open(args.log, "a", buffering=1) if args.log else None
        up = urllib.parse.urlsplit(args.upstream)
        self.up_host, self.up_port = up.hostname, up.port or 80
        self.reset()

    def reset(self):
        with self.lock:
            self.requests = {}
            self.counts = {}
            self.plans = []

    def draw(self, kind, body):
        """The fault for a request of this kind, or None."""
        with self.lock:
            self.requests[kind] = self.requests.get(kind, 0) + 1
            for p in self.plans:
                if p["kind"] == kind and p["count"] > 0 and (
                        not p.get("match") or p["match"].encode() in body):
                    p["count"] -= 1
                    f = p["fault"]
                    break
            else:
                f = None
                if kind in self.on and self.faults and \
                        self.rng.random() < self.rate:
                    f = self.rng.choice(self.faults)
            self.plans = [p for p in self.plans if p["count"] > 0]
            if f:
                k = self.counts.setdefault(kind, {})
                k[f] = k.get(f, 0) + 1
            return f

    def log(self, entry):
        if self.logf:
            self.logf.write(json.dumps(entry, separators=(",", ":")) + "\n")


def kind_of(method, path):
    if method in ("POST", "PUT"):
        return "create"
    if "/files/" in path or ":download" in path:
        return "download"
    return "poll"


def read_request(rf):
    """(method, target, headers list, body) or None at EOF."""
    line = rf.readline(65537)
    while line in (b"\r\n", b"\n"):
        line = rf.readline(65537)
    if not line:
        return None
    parts = line.decode("latin-1").split()
    if len(parts) != 3:
        return None
    method, target, _ = parts
    headers = []
    while True:
        h = rf.readline(65537)
        if h in (b"\r\n", b"\n", b""):
            break
        name, _, value = h.decode("latin-1").partition(":")
        headers.append((name.strip(), value.strip()))
    n = 0
    for name, value in headers:
        if name.lower() == "content-length":
            n = int(value)
    body = rf.read(n) if n else b""
    return method, target, headers, body


def upstream(st, method, target, headers, body):
    """Passes the request on: (status, reason, headers, body)."""
    c = http.client.HTTPConnection(st.up_host, st.up_port, timeout=120)
    try:
        hs = {n: v for n, v in headers if n.lower() not in HOP}
        if body or method in ("POST", "PUT"):
            hs["Content-Length"] = str(len(body))
        c.request(method, target, body=body or None, headers=hs)
        r = c.getresponse()
        data = r.read()
        return r.status, r.reason, r.getheaders(), data
    finally:
        c.close()


def head_bytes(status, reason, headers, length, keep):
    out = ["HTTP/1.1 %d %s" % (status, reason)]
    for n, v in headers:
        if n.lower() not in HOP:
            out.append("%s: %s" % (n, v))
    out.append("Content-Length: %d" % length)
    out.append("Connection: %s" % ("keep-alive" if keep else "close"))
    return ("\r\n".join(out) + "\r\n\r\n").encode("latin-1")


def rst(sock):
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                        struct.pack("ii", 1, 0))
    except OSError:
        pass


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        st = self.server.st
        while True:
            try:
                req = read_request(self.rfile)
            except (OSError, ValueError):
                return
            if req is None:
                return
            method, target, headers, body = req
            path = urllib.parse.urlsplit(target).path
            if path.startswith("/_faultproxy/"):
                self.control(method, path, body)
                continue
            kind = kind_of(method, path)
            fault = None if path.startswith("/_fake/") else st.draw(kind, body)
            if fault:
                e = {"ts": int(time.time() * 1000), "kind": kind,
                     "fault": fault, "method": method, "path": path}
                if kind == "create":
                    # Which request it was (a create's prompt is in it).
                    e["body"] = body[:4096].decode("utf-8", "replace")
                st.log(e)
            if fault == "500":
                self.wfile.write(head_bytes(500, "Internal Server Error",
                                            [("Content-Type", "text/html")],
                                            len(HTML_500), True) + HTML_500)
                self.wfile.flush()
                continue
            try:
                status, reason, rh, data = upstream(st, method, target,
                                                    headers, body)
            except OSError:
                self.wfile.write(head_bytes(502, "Bad Gateway", [], 0, False))
                return
            if fault == "reset":
                rst(self.connection)
                return
            if fault == "hang":
                if kind == "download" and data:
                    self.wfile.write(head_bytes(status, reason, rh,
                                                len(data), False))
                    self.wfile.write(data[:len(data) // 2])
                    self.wfile.flush()
                time.sleep(st.hang_s)
                return
            if fault == "truncate":
                self.wfile.write(head_bytes(status, reason, rh, len(data),
                                            False))
                self.wfile.write(data[:len(data) // 2])
                self.wfile.flush()
                return
            self.wfile.write(head_bytes(status, reason, rh, len(data), True))
            if method != "HEAD":
                self.wfile.write(data)
            self.wfile.flush()

    def control(self, method, path, body):
        st = self.server.st
        status, out = 200, {}
        try:
            arg = json.loads(body) if body else {}
        except ValueError:
            arg = None
        if path == "/_faultproxy/stats" and method == "GET":
            with st.lock:
                out = {"requests": dict(st.requests),
                       "faults": {k: dict(v) for k, v in st.counts.items()},
                       "planned": sum(p["count"] for p in st.plans),
                       "rate": st.rate}
        elif path == "/_faultproxy/plan" and method == "POST" and \
                isinstance(arg, dict) and arg.get("fault") in \
                ("500", "reset", "hang", "truncate") and \
                arg.get("kind") in ("create", "poll", "download"):
            with st.lock:
                st.plans.append({"kind": arg["kind"], "fault": arg["fault"],
                                 "count": int(arg.get("count", 1)),
                                 "match": arg.get("match")})
        elif path == "/_faultproxy/rate" and method == "POST" and \
                isinstance(arg, dict) and \
                isinstance(arg.get("rate"), (int, float)):
            with st.lock:
                st.rate = float(arg["rate"])
        elif path == "/_faultproxy/reset" and method == "POST":
            st.reset()
        else:
            status, out = 400, {"error": "bad control request"}
        data = json.dumps(out).encode()
        self.wfile.write(head_bytes(status, "OK" if status == 200 else
                                    "Bad Request",
                                    [("Content-Type", "application/json")],
                                    len(data), True) + data)
        self.wfile.flush()


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def main():
    ap = argparse.ArgumentParser(description="faulty proxy for the fake provider")
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--rate", type=float, default=0.0)
    ap.add_argument("--faults", default="500,reset,hang,truncate")
    ap.add_argument("--on", default="create,poll,download")
    ap.add_argument("--hang-ms", type=int, default=30000)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--log")
    args = ap.parse_args()
    srv = Server(("127.0.0.1", args.port), Handler)
    srv.st = State(args)

    def stop(signum, frame):
        threading.Thread(target=srv.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print("ready %d" % srv.server_address[1], flush=True)
    srv.serve_forever(poll_interval=0.2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
