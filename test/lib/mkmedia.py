#!/usr/bin/env python3
"""Small real media files for tests: mkmedia.py KIND OUT [SEED [SIZE]].

KIND: png (SIZE x SIZE, default 16), wav (SIZE tenths of a second), glb
(one triangle with a PBR material), hdr (SIZE x SIZE/2 Radiance).  SEED
varies the content so different seeds give different bytes.
"""
import json
import struct
import sys
import zlib


def png(seed, n):
    raw = b"".join(b"\x00" + bytes(v for x in range(n) for v in
                                    ((x * 7 + y * 3 + seed) % 256, (x + seed) % 256, (y * 5) % 256))
                   for y in range(n))
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", n, n, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def wav(seed, tenths):
    rate = 8000
    frames = rate * tenths // 10
    data = bytes(((i * (seed + 3)) % 256) for i in range(frames))
    return (b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt " +
            struct.pack("<IHHIIHH", 16, 1, 1, rate, rate, 1, 8) + b"data" +
            struct.pack("<I", len(data)) + data)


def glb(seed, _n):
    pos = struct.pack("<9f", 0, 0, 0, 1, 0, 0, 0, 1 + seed, 0)
    gltf = {"asset": {"version": "2.0"},
            "scenes": [{"nodes": [0]}], "scene": 0, "nodes": [{"mesh": 0}],
            "meshes": [{"primitives": [{"attributes": {"POSITION": 0}, "material": 0}]}],
            "materials": [{"pbrMetallicRoughness": {"baseColorFactor": [1, 0.8, 0.2, 1],
                                                    "metallicFactor": 1, "roughnessFactor": 0.3}}],
            "buffers": [{"byteLength": len(pos)}],
            "bufferViews": [{"buffer": 0, "byteLength": len(pos), "target": 34962}],
            "accessors": [{"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3",
                           "min": [0, 0, 0], "max": [1, 1 + seed, 0]}]}
    j = json.dumps(gltf).encode()
    j += b" " * (-len(j) % 4)
    b = pos + b"\0" * (-len(pos) % 4)
    body = struct.pack("<I4s", len(j), b"JSON") + j + struct.pack("<I4s", len(b), b"BIN\0") + b
    return struct.pack("<4sII", b"glTF", 2, 12 + len(body)) + body


def hdr(seed, n):
    w, h = n, max(1, n // 2)
    head = b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y %d +X %d\n" % (h, w)
    px = bytes([(seed * 13) % 256, 128, 64, 129]) * (w * h)
    return head + px


kind, out = sys.argv[1], sys.argv[2]
seed = int(sys.argv[3]) if len(sys.argv) > 3 else 0
size = int(sys.argv[4]) if len(sys.argv) > 4 else 16
data = {"png": png, "wav": wav, "glb": glb, "hdr": hdr}[kind](seed, size)
with open(out, "wb") as f:
    f.write(data)
