#!/usr/bin/env python3
"""Raw HTTP for the mi-serve tests, where curl would tidy the request.

httpraw.py PORT REQUEST      send REQUEST (Python escapes: \\r, \\n, \\x00)
                             and print the raw answer until the server
                             closes or goes quiet for a second.
httpraw.py corpus PORT TOKEN FILE KEY=VALUE...
                             for each line of FILE (escapes allowed,
                             {KEY} replaced), send a GET with the Bearer
                             TOKEN and print "STATUS<TAB>BODY-SHA256<TAB>LINE".
"""
import hashlib
import socket
import sys


def exchange(port, data, quiet=1.0):
    s = socket.create_connection(("127.0.0.1", int(port)), timeout=5)
    s.sendall(data)
    s.settimeout(quiet)
    out = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
    except socket.timeout:
        pass
    s.close()
    return out


def unescape(text):
    return text.encode("latin-1").decode("unicode_escape").encode("latin-1")


def corpus(port, token, path, subs):
    for line in open(path, encoding="latin-1"):
        line = line.rstrip("\n")
        if not line or line.startswith("#"):
            continue
        target = line
        for k, v in subs.items():
            target = target.replace("{" + k + "}", v)
        req = (b"GET " + unescape(target) + b" HTTP/1.1\r\nHost: t\r\n"
               b"Authorization: Bearer " + token.encode() +
               b"\r\nConnection: close\r\n\r\n")
        ans = exchange(port, req)
        status = ans.split(b" ", 2)[1].decode() if ans else "none"
        body = ans.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in ans else b""
        print("%s\t%s\t%s" % (status, hashlib.sha256(body).hexdigest(), line))


if __name__ == "__main__":
    if sys.argv[1] == "corpus":
        subs = dict(a.split("=", 1) for a in sys.argv[5:])
        corpus(sys.argv[2], sys.argv[3], sys.argv[4], subs)
    else:
        sys.stdout.buffer.write(exchange(sys.argv[1], unescape(sys.argv[2])))
