#!/usr/bin/env python3
"""Hostile clients for the mi-serve tests and test/bench/soak.sh.

serve_hostile.py pipeline PORT N PATH TOKEN...
    sends N GET PATH requests pipelined on one connection, each with the
    next TOKEN in turn as its Bearer token, reads the answers as they come
    and prints how many arrived.
serve_hostile.py idle PORT N SECONDS
    opens N connections, sends nothing, holds them SECONDS, then closes
    them; prints how many the server closed meanwhile.
serve_hostile.py junk PORT N PATH
    sends N malformed or hostile requests about PATH, each on its own
    connection (bad versions, folded and doubled headers, smuggling,
    traversal, oversized heads, half heads); prints how many were answered.
"""
import socket
import sys
import threading
import time


def pipeline(port, n, path, tokens):
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    got = [0]

    def reader():
        buf = b""
        while got[0] < n:
            b = s.recv(1 << 20)
            if not b:
                break
            buf += b
            k = buf.count(b"HTTP/1.1 ")
            if k:
                got[0] += k
                buf = buf[buf.rfind(b"HTTP/1.1 ") + 9:]

    t = threading.Thread(target=reader)
    t.start()
    for i in range(n):
        tok = tokens[i % len(tokens)]
        s.sendall(("GET %s HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s"
                   "\r\n\r\n" % (path, tok)).encode())
    t.join(60)
    s.close()
    print(got[0])


def idle(port, n, secs):
    socks = [socket.create_connection(("127.0.0.1", port), timeout=5)
             for _ in range(n)]
    time.sleep(secs)
    closed = 0
    for s in socks:
        s.setblocking(False)
        try:
            if s.recv(1) == b"":
                closed += 1
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
        s.close()
    print(closed)


JUNK = [
    b"GET %s HTTP/2.0\r\nHost: t\r\n\r\n",
    b"GET %s HTTP/1.1\r\nHost: t\r\n Folded: x\r\n\r\n",
    b"GET %s HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    b"GET %s HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n"
    b"Transfer-Encoding: chunked\r\n\r\nabc",
    b"GET %s/../../../etc/passwd HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET %s%%00.glb HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET %s HTTP/1.1\r\nHost: t\r\nX: " + b"a" * 17000 + b"\r\n\r\n",
    b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET %s HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer a.b.c\r\n"
    b"Range: bytes=99999999-\r\n\r\n",
    b"\x00\x01\x02\xff\r\n\r\n",
    b"GET %s HTTP/1.1\r\nHost: t\r\n",
]


def junk(port, n, path):
    answered = 0
    p = path.encode()
    for i in range(n):
        req = JUNK[i % len(JUNK)]
        if b"%s" in req:
            req = req.replace(b"%s", p, 1)
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(req)
            if req.endswith(b"\r\n\r\n") or b"abc" in req[-3:]:
                if s.recv(4096).startswith(b"HTTP/1.1 "):
                    answered += 1
            s.close()
        except OSError:
            pass
    print(answered)


if __name__ == "__main__":
    if sys.argv[1] == "pipeline":
        pipeline(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4],
                 sys.argv[5:])
    elif sys.argv[1] == "idle":
        idle(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
    elif sys.argv[1] == "junk":
        junk(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
    else:
        sys.exit("usage: serve_hostile.py pipeline|idle|junk ...")
