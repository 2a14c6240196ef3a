#!/usr/bin/env python3
"""Fake media-generation provider APIs for mi's tests.

One HTTP server speaks the request and response shapes of Meshy, the
Gemini API (image and Veo), sunoapi.org, ElevenLabs sound generation,
Blockade Labs Skybox and the fal.ai queue, each under its own path prefix.
Faults are chosen per request by markers in the prompt text.  See
README.md next to this file for the full behaviour.

    provider.py --port PORT --log FILE [--job-ms MS] [--key KEY] [--no-log-polls]
"""

import argparse
import base64
import binascii
import hashlib
import json
import os
import random
import re
import shutil
import signal
import socket
import string
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zlib
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, urlsplit

import webhooks  # noqa: E402  (test/fake/webhooks.py)

PROVIDERS = ("meshy", "gemini", "veo", "suno", "elevenlabs", "blockade", "fal", "replicate")
MARKER_RE = re.compile(r"\[([a-z0-9]+)(?::([^\]@]*))?(?:@([a-z0-9-]+))?\]")
RETENTION_MS = 3 * 86400 * 1000

# --------------------------------------------------------------------------
# Media: small but real files, built once at startup.


def _png_chunk(tag, data):
    return (struct.pack(">I", len(data)) + tag + data +
            struct.pack(">I", zlib.crc32(tag + data) & 0xffffffff))


def make_png(w, h, seed=0):
    xs = bytes((x * 255 // max(w - 1, 1)) for x in range(w))
    blue = bytes([seed & 0xff]) * w
    raw = bytearray()
    for y in range(h):
        row = bytearray(w * 3)
        row[0::3] = xs
        row[1::3] = bytes([y * 255 // max(h - 1, 1)]) * w
        row[2::3] = blue
        raw.append(0)
        raw += row
    return (b"\x89PNG\r\n\x1a\n" +
            _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) +
            _png_chunk(b"IDAT", zlib.compress(bytes(raw), 6)) +
            _png_chunk(b"IEND", b""))


def png_tag(png, text):
    """Insert a tEXt chunk after IHDR: same picture, distinct bytes."""
    at = 8 + 25
    return png[:at] + _png_chunk(b"tEXt", b"Comment\x00" + text.encode()) + png[at:]


def make_glb(note=""):
    pos = struct.pack("<9f", 0, 0, 0, 1, 0, 0, 0, 1, 0)
    idx = struct.pack("<3H", 0, 1, 2) + b"\x00\x00"
    binc = pos + idx
    gltf = {
        "asset": {"version": "2.0", "generator": "mi fake provider",
                  "extras": {"note": note}},
        "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0},
                                    "indices": 1, "material": 0, "mode": 4}]}],
        "materials": [{"pbrMetallicRoughness": {
            "baseColorFactor": [0.8, 0.6, 0.2, 1.0],
            "metallicFactor": 0.5, "roughnessFactor": 0.4}}],
        "buffers": [{"byteLength": len(binc)}],
        "bufferViews": [
            {"buffer": 0, "byteOffset": 0, "byteLength": 36, "target": 34962},
            {"buffer": 0, "byteOffset": 36, "byteLength": 6, "target": 34963}],
        "accessors": [
            {"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3",
             "min": [0, 0, 0], "max": [1, 1, 0]},
            {"bufferView": 1, "componentType": 5123, "count": 3, "type": "SCALAR"}],
    }
    js = json.dumps(gltf, separators=(",", ":")).encode()
    js += b" " * (-len(js) % 4)
    total = 12 + 8 + len(js) + 8 + len(binc)
    return (struct.pack("<4sII", b"glTF", 2, total) +
            struct.pack("<I4s", len(js), b"JSON") + js +
            struct.pack("<I4s", len(binc), b"BIN\x00") + binc)


def make_wav(seconds=1.0, rate=22050, note=b""):
    n = int(rate * seconds)
    samples = bytearray()
    for i in range(n):
        v = int(8000 * ((i * 440 * 2 // rate) % 2 * 2 - 1))
        samples += struct.pack("<h", v)
    samples[0:len(note)] = note[:len(samples)]
    return (b"RIFF" + struct.pack("<I", 36 + len(samples)) + b"WAVEfmt " +
            struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16) +
            b"data" + struct.pack("<I", len(samples)) + bytes(samples))


def make_hdr(w=512, h=256, note=""):
    head = ("#?RADIANCE\nSOFTWARE=mi fake provider %s\n"
            "FORMAT=32-bit_rle_rgbe\n\n-Y %d +X %d\n" % (note, h, w)).encode()
    rows = []
    for y in range(h):
        e = 128 + (y * 4 // h)
        rows.append(bytes([160, 140, 120, e]) * w)
    return head + b"".join(rows)


def make_exr(w=256, h=128, note=""):
    def attr(name, typ, data):
        return name.encode() + b"\0" + typ.encode() + b"\0" + struct.pack("<i", len(data)) + data
    chl = b""
    for c in ("B", "G", "R"):
        chl += c.encode() + b"\0" + struct.pack("<iB3xii", 1, 0, 1, 1)
    chl += b"\0"
    hdr = b"\x76\x2f\x31\x01" + struct.pack("<i", 2)
    hdr += attr("channels", "chlist", chl)
    hdr += attr("comments", "string", note.encode())
    hdr += attr("compression", "compression", b"\0")
    hdr += attr("dataWindow", "box2i", struct.pack("<4i", 0, 0, w - 1, h - 1))
    hdr += attr("displayWindow", "box2i", struct.pack("<4i", 0, 0, w - 1, h - 1))
    hdr += attr("lineOrder", "lineOrder", b"\0")
    hdr += attr("pixelAspectRatio", "float", struct.pack("<f", 1.0))
    hdr += attr("screenWindowCenter", "v2f", struct.pack("<2f", 0.0, 0.0))
    hdr += attr("screenWindowWidth", "float", struct.pack("<f", 1.0))
    hdr += b"\0"
    blocks = []
    for y in range(h):
        px = b""
        for v in (0.4, 0.6, 0.2 + y / h):
            px += struct.pack("<e", v) * w
        blocks.append(struct.pack("<ii", y, len(px)) + px)
    off = len(hdr) + 8 * h
    table = b""
    for b in blocks:
        table += struct.pack("<Q", off)
        off += len(b)
    return hdr + table + b"".join(blocks)


def make_fbx(note=""):
    return (b"Kaydara FBX Binary  \x00\x1a\x00" + struct.pack("<I", 7400) +
            b"\x00" * 13 + note.encode())


def _mp3_fallback():
    # MPEG-1 Layer III, 128 kbit/s, 44.1 kHz, no padding: 417-byte frames.
    frame = b"\xff\xfb\x90\x64" + b"\x00" * 413
    return frame * 38


def _mp4_fallback():
    ftyp = b"ftypisom" + struct.pack(">I", 512) + b"isomiso2avc1mp41"
    return struct.pack(">I", 8 + len(ftyp)) + ftyp + struct.pack(">I", 16) + b"free" + b"\0" * 8


def _jpg_fallback():
    app0 = b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    return b"\xff\xd8\xff\xe0" + struct.pack(">H", len(app0) + 2) + app0 + b"\xff\xd9"


def ffmpeg_media():
    """mp4, mp3, jpg via ffmpeg when present; sniff-valid fallbacks otherwise."""
    out = {"mp4": None, "mp3": None, "jpg": None}
    ff = shutil.which("ffmpeg")
    if ff:
        tmp = tempfile.mkdtemp(prefix="mi-fake-")
        jobs = {
            "mp4": ["-f", "lavfi", "-i", "testsrc=size=320x240:rate=24", "-t", "1",
                    "-pix_fmt", "yuv420p", "-movflags", "+faststart"],
            "mp3": ["-f", "lavfi", "-i", "sine=frequency=440:duration=1",
                    "-b:a", "128k", "-id3v2_version", "0"],
            "jpg": ["-f", "lavfi", "-i", "testsrc=size=1024x512", "-frames:v", "1"],
        }
        procs = {}
        for k, a in jobs.items():
            procs[k] = subprocess.Popen([ff, "-nostdin", "-v", "error", "-y"] + a +
                                        [os.path.join(tmp, "out." + k)],
                                        stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        for k, p in procs.items():
            p.wait()
            f = os.path.join(tmp, "out." + k)
            if p.returncode == 0 and os.path.getsize(f) > 0:
                with open(f, "rb") as fh:
                    out[k] = fh.read()
        shutil.rmtree(tmp, ignore_errors=True)
    if out["mp4"] is None:
        out["mp4"] = _mp4_fallback()
    if out["mp3"] is None:
        out["mp3"] = _mp3_fallback()
    if out["jpg"] is None:
        out["jpg"] = _jpg_fallback()
    return out


class Media:
    def __init__(self):
        ff = ffmpeg_media()
        self.mp4, self.mp3, self.jpg = ff["mp4"], ff["mp3"], ff["jpg"]
        self.png_small = make_png(64, 64, 7)
        self._png = {}
        self._lock = threading.Lock()

    def png(self, w, h):
        w = max(1, min(int(w), 4096))
        h = max(1, min(int(h), 4096))
        with self._lock:
            p = self._png.get((w, h))
            if p is None:
                p = self._png[(w, h)] = make_png(w, h, (w * 31 + h) & 0xff)
            return p

    def build(self, ext, note, size=None):
        """Bytes of a file with extension ext, made distinct by note."""
        nb = note.encode()
        if ext == "png":
            w, h = size or (64, 64)
            base = self.png(w, h)
            return png_tag(base, note) if note else base
        if ext == "glb":
            return make_glb(note)
        if ext == "mp3":
            if not note:
                return self.mp3
            tag = b"TAG" + nb[:30].ljust(30, b"\0") + b"mi fake".ljust(30, b"\0")
            tag += b"\0" * 30 + b"2025" + b"\0" * 30 + b"\xff"
            return self.mp3 + tag[:128]
        if ext == "mp4":
            if not note:
                return self.mp4
            return self.mp4 + struct.pack(">I", 8 + len(nb)) + b"free" + nb
        if ext == "jpg":
            if not note:
                return self.jpg
            com = struct.pack(">H", len(nb) + 2) + nb
            return self.jpg[:2] + b"\xff\xfe" + com + self.jpg[2:]
        if ext == "hdr":
            return make_hdr(512, 256, note)
        if ext == "exr":
            return make_exr(256, 128, note)
        if ext == "wav":
            return make_wav(1.0, 22050, nb)
        if ext == "fbx":
            return make_fbx(note)
        return nb


# --------------------------------------------------------------------------
# Results that keep or break the request's promises: sound of the asked
# length ([short]: 40 % short), and [heavy]: a 300,000-triangle GLB whose
# material has base colour and metallic-roughness maps but no normal map.

_HEAVY = {}
_HEAVY_LOCK = threading.Lock()


def make_heavy_glb(triangles=300000):
    """A grid of triangles with UVs and two textures, built once."""
    with _HEAVY_LOCK:
        if triangles in _HEAVY:
            return _HEAVY[triangles]
        q = 1
        while 2 * q * q < triangles:
            q += 1
        n = q + 1
        pos = bytearray()
        uv = bytearray()
        for j in range(n):
            for i in range(n):
                x, z = i / q * 2 - 1, j / q * 2 - 1
                y = 0.1 * ((i * 7 + j * 13) % 17) / 17
                pos += struct.pack("<3f", x, y, z)
                uv += struct.pack("<2f", i / q, j / q)
        idx = bytearray()
        left = triangles
        for j in range(q):
            for i in range(q):
                a = j * n + i
                if left > 0:
                    idx += struct.pack("<3I", a, a + n, a + 1)
                    left -= 1
                if left > 0:
                    idx += struct.pack("<3I", a + 1, a + n, a + n + 1)
                    left -= 1
        tex = [make_png(64, 64, 3), make_png(64, 64, 5)]
        chunks = [bytes(pos), bytes(uv), bytes(idx)] + tex
        views, off = [], 0
        binc = b""
        for k, c in enumerate(chunks):
            v = {"buffer": 0, "byteOffset": off, "byteLength": len(c)}
            if k < 2:
                v["target"] = 34962
            elif k == 2:
                v["target"] = 34963
            views.append(v)
            c = c + b"\0" * (-len(c) % 4)
            binc += c
            off += len(c)
        gltf = {
            "asset": {"version": "2.0", "generator": "mi fake provider (heavy)"},
            "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0}],
            "meshes": [{"primitives": [{"attributes": {"POSITION": 0, "TEXCOORD_0": 1},
                                        "indices": 2, "material": 0, "mode": 4}]}],
            "materials": [{"name": "heavy", "pbrMetallicRoughness": {
                "baseColorTexture": {"index": 0},
                "metallicRoughnessTexture": {"index": 1}}}],
            "textures": [{"source": 0}, {"source": 1}],
            "images": [{"bufferView": 3, "mimeType": "image/png"},
                       {"bufferView": 4, "mimeType": "image/png"}],
            "buffers": [{"byteLength": len(binc)}],
            "bufferViews": views,
            "accessors": [
                {"bufferView": 0, "componentType": 5126, "count": n * n, "type": "VEC3",
                 "min": [-1, 0, -1], "max": [1, 0.1 * 16 / 17, 1]},
                {"bufferView": 1, "componentType": 5126, "count": n * n, "type": "VEC2"},
                {"bufferView": 2, "componentType": 5125, "count": triangles * 3,
                 "type": "SCALAR"}],
        }
        js = json.dumps(gltf, separators=(",", ":")).encode()
        js += b" " * (-len(js) % 4)
        total = 12 + 8 + len(js) + 8 + len(binc)
        g = (struct.pack("<4sII", b"glTF", 2, total) +
             struct.pack("<I4s", len(js), b"JSON") + js +
             struct.pack("<I4s", len(binc), b"BIN\x00") + binc)
        _HEAVY[triangles] = g
        return g


def mp3_frames(mp3):
    """The MPEG audio frames of a CBR MP3 without tags or a Xing frame."""
    frames, i = [], 0
    rates = [0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 0]
    srs = [44100, 48000, 32000, 0]
    while i + 4 <= len(mp3):
        h = mp3[i:i + 4]
        if h[0] != 0xff or (h[1] & 0xe0) != 0xe0:
            i += 1
            continue
        br, sr = rates[h[2] >> 4], srs[(h[2] >> 2) & 3]
        if not br or not sr:
            i += 1
            continue
        size = 144000 * br // sr + ((h[2] >> 1) & 1)
        f = mp3[i:i + size]
        if b"Xing" not in f[:64] and b"Info" not in f[:64]:
            frames.append(f)
        i += size
    return frames


def sized_mp3(mp3, seconds, note=b""):
    """An MP3 of about seconds, made of the frames of mp3 repeated."""
    frames = mp3_frames(mp3) or [mp3]
    want = max(1, int(round(seconds * 44100 / 1152)))
    out = b"".join(frames[k % len(frames)] for k in range(want))
    if note:
        tag = b"TAG" + note[:30].ljust(30, b"\0") + b"mi fake".ljust(30, b"\0")
        tag += b"\0" * 30 + b"2025" + b"\0" * 30 + b"\xff"
        out += tag[:128]
    return out


def promised_audio(fake, markers, seconds, note):
    """Sound of the asked length, or 40 % short with [short]."""
    if seconds is None:
        return None
    if "short" in markers:
        seconds = seconds * 0.6
    return sized_mp3(fake.media.mp3, seconds, note)


def broken_result(fake, job, ext):
    """A file that breaks the request's promise, or None."""
    if ext == "glb" and "heavy" in job.markers:
        return make_heavy_glb()
    return None


CTYPES = {
    "png": "image/png", "jpg": "image/jpeg", "glb": "model/gltf-binary",
    "mp3": "audio/mpeg", "mp4": "video/mp4", "hdr": "image/vnd.radiance",
    "exr": "image/x-exr", "wav": "audio/wav", "fbx": "application/octet-stream",
}

# --------------------------------------------------------------------------
# Jobs and statistics.


def strings_in(obj, out):
    if isinstance(obj, str):
        if not (len(obj) > 4096 and obj.startswith("data:")):
            out.append(obj)
    elif isinstance(obj, dict):
        for v in obj.values():
            strings_in(v, out)
    elif isinstance(obj, list):
        for v in obj:
            strings_in(v, out)
    return out


def parse_markers(texts, provider):
    """Markers that apply at this provider: {name: arg or ''}."""
    m = {}
    for t in texts:
        for name, arg, scope in MARKER_RE.findall(t):
            if scope and scope != provider:
                continue
            m[name] = arg or ""
    return m


def marker_int(markers, name, default):
    try:
        return int(markers.get(name) or default)
    except ValueError:
        return default


def rid(n=12, alphabet=string.ascii_lowercase + string.digits):
    return "".join(random.choice(alphabet) for _ in range(n))


class Job:
    def __init__(self, fake, provider, kind, prompt, markers, body, jid=None):
        self.id = jid or str(uuid.uuid4())
        self.provider = provider
        self.kind = kind
        self.prompt = prompt
        self.markers = markers
        self.body = body
        self.tag = markers.get("tag") or None
        self.wall0 = int(time.time() * 1000)
        self.t0 = time.monotonic()
        if "never" in markers:
            self.duration = None
        else:
            self.duration = marker_int(markers, "slow", fake.job_ms)
        self.in_flight = False
        self.seq = 0
        self.gen = 0
        self.expired_gen = None
        self.truncated_left = (marker_int(markers, "truncated", 1 << 30)
                               if "truncated" in markers else 0)
        self.primary = set()
        self.sizes = {}
        self.extra = {}
        self.fake = fake

    def phase(self):
        """(fraction 0..1, finished?)."""
        el = (time.monotonic() - self.t0) * 1000.0
        if self.duration is None:
            return min(el / max(self.fake.job_ms, 1), 1.0) * 0.45, False
        if el >= self.duration:
            return 1.0, True
        return el / max(self.duration, 1), False

    def at(self, frac):
        """Epoch ms at which the job reached fraction frac."""
        d = self.duration if self.duration is not None else self.fake.job_ms
        return self.wall0 + int(d * frac)

    def failed(self):
        return "fail" in self.markers or "blocked" in self.markers


class Fake:
    def __init__(self, key, job_ms, log_path, log_polls, media, rep_page=100):
        self.key = key
        self.rep_page = rep_page
        self.job_ms = job_ms
        self.media = media
        self.log_polls = log_polls
        self.lock = threading.Lock()
        self.log_lock = threading.Lock()
        self.logf = open(log_path, "a", buffering=1 << 16) if log_path else None
        self.port = 0
        self.downloads_now = 0      # not reset: those under way still end
        self.reset()

    def reset(self):
        with self.lock:
            self.jobs = {}
            self.alias = {}
            self.attempts = {}
            self.creates_accepted = {}
            self.creates_by_prompt = {}
            self.attempts_by_prompt = {}
            self.results_by_prompt = {}
            self.inflight_p = {}
            self.inflight_t = {}
            self.max_p = {}
            self.max_t = {}
            self.in_flight = 0
            self.downloads = {}
            self.downloads_with_key = {}
            self.downloads_max = 0
            self.requests = 0
            self.polls = 0
            self.connections = 0
            self.blockade_seq = 8442285
            self.seq = 0

    def log(self, entry):
        if self.logf is None:
            return
        line = json.dumps(entry, separators=(",", ":")) + "\n"
        with self.log_lock:
            self.logf.write(line)
            self.logf.flush()

    def attempt(self, provider, prompt):
        """Count a create attempt; returns its 1-based number."""
        with self.lock:
            k = (provider, prompt)
            n = self.attempts.get(k, 0) + 1
            self.attempts[k] = n
            self.attempts_by_prompt[prompt] = self.attempts_by_prompt.get(prompt, 0) + 1
            return n

    def add(self, job, alias=None):
        with self.lock:
            self.seq += 1
            job.seq = self.seq
            self.jobs[job.id] = job
            if alias:
                self.alias[alias] = job.id
            p = job.provider
            self.creates_accepted[p] = self.creates_accepted.get(p, 0) + 1
            self.creates_by_prompt[job.prompt] = self.creates_by_prompt.get(job.prompt, 0) + 1
            job.in_flight = True
            self.in_flight += 1
            n = self.inflight_p[p] = self.inflight_p.get(p, 0) + 1
            if n > self.max_p.get(p, 0):
                self.max_p[p] = n
            if job.tag:
                n = self.inflight_t[job.tag] = self.inflight_t.get(job.tag, 0) + 1
                if n > self.max_t.get(job.tag, 0):
                    self.max_t[job.tag] = n
        return job

    def final(self, job):
        """The job's final state has been reported: it leaves flight."""
        if not job.in_flight:
            return
        with self.lock:
            if not job.in_flight:
                return
            job.in_flight = False
            self.in_flight -= 1
            self.inflight_p[job.provider] -= 1
            if job.tag:
                self.inflight_t[job.tag] -= 1

    def get(self, jid):
        j = self.jobs.get(jid)
        if j is None:
            a = self.alias.get(jid)
            if a:
                j = self.jobs.get(a)
        return j

    def result_read(self, job):
        """Count a read of a job's result document; returns its number."""
        with self.lock:
            n = self.results_by_prompt[job.prompt] = \
                self.results_by_prompt.get(job.prompt, 0) + 1
            return n

    def bump(self, job):
        with self.lock:
            job.gen += 1
            return job.gen

    def stats(self):
        with self.lock:
            return {
                "creates_accepted": dict(self.creates_accepted),
                "creates_by_prompt": dict(self.creates_by_prompt),
                "attempts_by_prompt": dict(self.attempts_by_prompt),
                "results_by_prompt": dict(self.results_by_prompt),
                "max_concurrent": dict(self.max_p),
                "max_concurrent_by_tag": dict(self.max_t),
                "in_flight": self.in_flight,
                "in_flight_by_provider": {k: v for k, v in self.inflight_p.items() if v},
                "downloads": dict(self.downloads),
                "downloads_with_key": dict(self.downloads_with_key),
                "downloads_max_at_once": self.downloads_max,
                "jobs": len(self.jobs),
                "requests": self.requests,
                "polls": self.polls,
                "connections": self.connections,
            }


# --------------------------------------------------------------------------
# Responses.


class Resp:
    __slots__ = ("status", "body", "ctype", "headers", "truncate", "delay")

    def __init__(self, status, body=b"", ctype="application/json", headers=None,
                 truncate=False, delay=0.0):
        if not isinstance(body, (bytes, bytearray)):
            body = json.dumps(body, separators=(",", ":")).encode()
        self.status = status
        self.body = body
        self.ctype = ctype
        self.headers = headers or {}
        self.truncate = truncate
        self.delay = delay


def J(status, obj, headers=None):
    return Resp(status, obj, "application/json", headers)


HTML_ERROR = (b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>"
              b"<body><h1>502 Bad Gateway</h1><p>The upstream storage did not answer."
              b"</p></body></html>\n")

XML_EXPIRED = (b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied"
               b"</Code><Message>Request has expired</Message></Error>\n")


def google_err(code, status, message, reason=None, headers=None):
    e = {"code": code, "message": message, "status": status}
    if reason:
        e["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                         "reason": reason, "domain": "googleapis.com",
                         "metadata": {"service": "generativelanguage.googleapis.com"}}]
    return J(code, {"error": e}, headers)


def iso(ms):
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="seconds")


class Ctx:
    """One request, as the handlers see it."""

    def __init__(self, h, method, fake):
        self.h = h
        self.method = method
        self.fake = fake
        u = urlsplit(h.path)
        self.path = u.path
        self.q = {k: v[-1] for k, v in parse_qs(u.query, keep_blank_values=True).items()}
        self.headers = h.headers
        self.raw = h.read_body()
        self.body = None
        self.bad_json = False
        if self.raw:
            ct = (self.headers.get("Content-Type") or "").lower()
            if "x-www-form-urlencoded" in ct and self.raw[:1] not in (b"{", b"["):
                self.body = {k: v[-1] for k, v in
                             parse_qs(self.raw.decode("utf-8", "replace")).items()}
            else:
                try:
                    self.body = json.loads(self.raw)
                except ValueError:
                    self.bad_json = True
        self.provider = None
        self.event = "other"
        self.job = None
        self.accepted = None
        self.host = h.headers.get("Host") or "127.0.0.1:%d" % fake.port

    def base(self):
        return "http://" + self.host

    def hdr(self, name):
        return self.headers.get(name)

    def bearer(self):
        a = self.hdr("Authorization") or ""
        return a[7:].strip() if a[:7].lower() == "bearer " else None

    def file_url(self, job, name, gen):
        exp = int(time.time()) + RETENTION_MS // 1000
        sig = hashlib.sha256(("%s/%s/%d/%d" % (job.id, name, gen, exp)).encode()).hexdigest()[:32]
        return "%s/files/%s/%s/%d/%s?Expires=%d&Signature=%s" % (
            self.base(), job.provider, job.id, gen, name, exp, sig)


def body_prompt_texts(body):
    return strings_in(body, []) if body is not None else []


# --------------------------------------------------------------------------
# Downloads (shared by every provider).

KEY_HEADERS = ("authorization", "x-goog-api-key", "xi-api-key", "x-api-key")


def key_sent(ctx):
    for k in KEY_HEADERS:
        if ctx.headers.get(k):
            return True
    return "key" in ctx.q or "api_key" in ctx.q


def expired_resp(provider):
    if provider == "veo":
        return google_err(403, "PERMISSION_DENIED", "The file has expired or does not exist.")
    if provider in ("suno", "fal"):
        return Resp(410, b"Gone: this link has expired\n", "text/plain")
    return Resp(403, XML_EXPIRED, "application/xml")


def serve_file(ctx, job, name, gen):
    fake = ctx.fake
    ctx.event = "download"
    ctx.job = job
    ks = key_sent(ctx)
    ctx.key_sent = ks
    with fake.lock:
        fake.downloads[job.provider] = fake.downloads.get(job.provider, 0) + 1
        if ks:
            fake.downloads_with_key[job.provider] = fake.downloads_with_key.get(job.provider, 0) + 1
    ext = name.rsplit(".", 1)[-1]
    ctype = CTYPES.get(ext, "application/octet-stream")
    m = job.markers
    if name in job.primary:
        if "expired" in m:
            with fake.lock:
                if job.expired_gen is None:
                    job.expired_gen = gen
                bad = gen <= job.expired_gen
            if bad:
                return expired_resp(job.provider)
        if "html" in m:
            return Resp(200, HTML_ERROR, "text/html; charset=utf-8")
        if "badtype" in m:
            alt = "mp3" if ext in ("png", "jpg") else "png"
            return Resp(200, fake.media.build(alt, job.id), ctype)
    note = "" if "same" in m else job.id + "/" + name
    data = broken_result(fake, job, ext)
    if data is None:
        data = fake.media.build(ext, note, job.sizes.get(name))
    trunc = False
    if name in job.primary and job.truncated_left > 0:
        with fake.lock:
            if job.truncated_left > 0:
                job.truncated_left -= 1
                trunc = True
    delay = marker_int(m, "dlslow", 0) / 1000.0 if name in job.primary else 0.0
    return Resp(200, data, ctype, {"Cache-Control": "private, max-age=0"}, truncate=trunc,
                delay=delay)


def route_files(ctx, parts):
    # /files/{provider}/{job}/{gen}/{name}
    ctx.event = "download"
    if len(parts) != 4 or ctx.method not in ("GET", "HEAD"):
        return Resp(404, b"Not Found\n", "text/plain")
    prov, jid, gen, name = parts
    ctx.provider = prov
    job = ctx.fake.get(jid)
    try:
        g = int(gen)
    except ValueError:
        g = -1
    if job is None or job.provider != prov or name not in job.extra.get("files", ()) or g < 1:
        return Resp(404, b"Not Found\n", "text/plain")
    return serve_file(ctx, job, name, g)


# --------------------------------------------------------------------------
# Create-time faults, shared.


def create_faults(ctx, provider, prompt, markers, errs):
    """Apply [500] [500x2] [429] [credits]; returns a Resp or None.

    errs maps 'down', '500', '503', '429', 'credits' to callables giving
    the provider's own error response.
    """
    n = ctx.fake.attempt(provider, prompt)
    ctx.attempt = n
    if "500" in markers:
        return errs["503"]()
    if "500x2" in markers and n <= 2:
        return errs["500"]() if n == 1 else errs["503"]()
    if "429" in markers and n == 1:
        r = errs["429"]()
        r.headers["Retry-After"] = "1"
        return r
    if "credits" in markers:
        return errs["credits"]()
    return None


def hang_delay(markers, attempt):
    if "hang" in markers and attempt == 1:
        return marker_int(markers, "hang", 30000) / 1000.0
    return 0.0


# --------------------------------------------------------------------------
# Meshy.

MESHY_ERRS = {
    "500": lambda: J(500, {"message": "Internal server error."}),
    "503": lambda: J(503, {"message": "Service temporarily unavailable."}),
    "429": lambda: J(429, {"message": "RateLimitExceeded"}),
    "credits": lambda: J(402, {"message": "Insufficient credits."}),
}
MESHY_COST = {"text-to-3d-preview": 20, "text-to-3d-refine": 10, "image-to-3d": 30,
              "multi-image-to-3d": 30}
MESHY_PATHS = ("openapi/v2/text-to-3d", "openapi/v1/image-to-3d", "openapi/v1/multi-image-to-3d")


def meshy_kind(p):
    return ("text-to-3d" if "text-to-3d" in p else
            "multi-image-to-3d" if "multi-image" in p else "image-to-3d")


def meshy_task(ctx, job):
    fake = ctx.fake
    frac, done = job.phase()
    t = {"id": job.id, "type": job.kind, "mode": job.extra.get("mode"),
         "prompt": job.prompt if not job.kind.endswith("image-to-3d") else "",
         "texture_prompt": job.extra.get("texture_prompt", ""),
         "art_style": "realistic", "negative_prompt": "",
         "preceding_tasks": 0, "created_at": job.wall0,
         "started_at": 0, "finished_at": 0, "expires_at": 0,
         "model_urls": {}, "texture_urls": [], "thumbnail_url": "",
         "video_url": "", "task_error": {"message": ""}}
    if job.kind.endswith("image-to-3d"):
        del t["mode"]
    if frac < 0.2 and not done:
        t["status"] = "PENDING"
        t["progress"] = 0
        t["preceding_tasks"] = 1
        return t
    t["started_at"] = job.at(0.2)
    if not done:
        t["status"] = "IN_PROGRESS"
        t["progress"] = max(1, min(99, int(frac * 100)))
        return t
    t["finished_at"] = job.at(1.0)
    if job.failed():
        t["status"] = "FAILED"
        t["progress"] = 0
        t["task_error"] = {"message": "Internal server error."}
        t["consumed_credits"] = 0
    else:
        g = fake.bump(job)
        t["status"] = "SUCCEEDED"
        t["progress"] = 100
        t["expires_at"] = t["finished_at"] + RETENTION_MS
        t["model_urls"] = {"glb": ctx.file_url(job, "model.glb", g),
                           "fbx": ctx.file_url(job, "model.fbx", g)}
        if "texture_0.png" in job.extra["files"]:
            t["texture_urls"] = [{"base_color": ctx.file_url(job, "texture_0.png", g)}]
        t["thumbnail_url"] = ctx.file_url(job, "preview.png", g)
        t["consumed_credits"] = MESHY_COST.get(job.kind, 20)
    fake.final(job)
    return t


def route_meshy(ctx, parts):
    fake = ctx.fake
    ctx.provider = "meshy"
    p = "/".join(parts)
    if ctx.bearer() != fake.key:
        if p in MESHY_PATHS:
            ctx.event = "create" if ctx.method == "POST" else "list"
            if ctx.method == "POST":
                ctx.accepted = False
        elif len(parts) == 4 and ctx.method == "GET":
            ctx.event = "poll"
        return J(401, {"message": "Invalid API key."})
    if p == "openapi/v1/balance" and ctx.method == "GET":
        return J(200, {"balance": 1000})
    if p in MESHY_PATHS:
        kind_prefix = meshy_kind(p)
        if ctx.method == "POST":
            return meshy_create(ctx, kind_prefix)
        if ctx.method == "GET":
            return meshy_list(ctx, kind_prefix)
        return J(405, {"message": "Method not allowed."})
    if len(parts) == 4 and "/".join(parts[:3]) in MESHY_PATHS:
        kind_prefix = meshy_kind(parts[2])
        job = fake.get(parts[3])
        if job is None or job.provider != "meshy" or not job.kind.startswith(kind_prefix):
            ctx.event = "poll"
            return J(404, {"message": "Task not found."})
        ctx.job = job
        if ctx.method == "GET":
            ctx.event = "poll"
            return J(200, meshy_task(ctx, job))
        if ctx.method == "DELETE":
            return Resp(200, b"", "text/plain")
    return J(404, {"message": "Not found."})


def meshy6_options(b):
    """Meshy 6's geometry options, checked as the API does."""
    if b.get("ai_model") not in (None, "meshy-5", "meshy-6", "latest"):
        return "Invalid ai_model."
    if b.get("symmetry_mode") not in (None, "off", "auto", "on"):
        return "Invalid symmetry_mode."
    if b.get("pose_mode") not in (None, "a-pose", "t-pose", ""):
        return "Invalid pose_mode."
    if b.get("model_type") not in (None, "standard", "lowpoly"):
        return "Invalid model_type."
    for k in ("should_remesh", "should_texture", "enable_pbr", "remove_lighting"):
        if b.get(k) is not None and not isinstance(b.get(k), bool):
            return "Invalid %s." % k
    return None


def meshy_create(ctx, kind_prefix):
    fake = ctx.fake
    ctx.event = "create"
    ctx.accepted = False
    b = ctx.body
    if ctx.bad_json or not isinstance(b, dict):
        return J(400, {"message": "Invalid request body."})
    extra = {"files": ["model.glb", "model.fbx", "preview.png"]}
    texts = body_prompt_texts(b)
    bad = meshy6_options(b)
    if bad:
        return J(400, {"message": bad})
    if kind_prefix == "multi-image-to-3d":
        urls = b.get("image_urls")
        if not isinstance(urls, list) or not 1 <= len(urls) <= 4:
            return J(400, {"message": "Invalid image_urls: 1 to 4 images are required."})
        for img in urls:
            if not isinstance(img, str) or not (img.startswith("data:image/") or
                                                img.startswith(("http://", "https://"))):
                return J(400, {"message": "Invalid image_urls."})
        prompt = b.get("texture_prompt") or ""
        markers = parse_markers(texts, "meshy")
        kind = "multi-image-to-3d"
        if b.get("should_texture", True) is not False:
            extra["files"].append("texture_0.png")
        extra["texture_prompt"] = prompt
    elif kind_prefix == "text-to-3d":
        mode = b.get("mode")
        if mode == "preview":
            prompt = b.get("prompt")
            if not isinstance(prompt, str) or not prompt.strip():
                return J(400, {"message": "Invalid prompt: prompt is required."})
            if len(prompt) > 600:
                return J(400, {"message": "Invalid prompt: prompt is longer than 600 characters."})
            tp = b.get("target_polycount")
            if tp is not None and (not isinstance(tp, int) or isinstance(tp, bool)
                                   or not 100 <= tp <= 300000):
                return J(400, {"message": "Invalid target_polycount: must be between 100 and 300000."})
            if b.get("topology") not in (None, "quad", "triangle"):
                return J(400, {"message": "Invalid topology."})
            kind = "text-to-3d-preview"
            markers = parse_markers(texts, "meshy")
        elif mode == "refine":
            pid = b.get("preview_task_id")
            prev = fake.get(pid) if isinstance(pid, str) else None
            if prev is None or prev.kind != "text-to-3d-preview":
                return J(400, {"message": "Invalid preview_task_id."})
            _, done = prev.phase()
            if not done or prev.failed():
                return J(400, {"message": "Preview task has not succeeded."})
            tpr = b.get("texture_prompt")
            if tpr is not None and (not isinstance(tpr, str) or len(tpr) > 600):
                return J(400, {"message": "Invalid texture_prompt."})
            prompt = prev.prompt
            markers = dict(prev.markers)
            markers.update(parse_markers(texts, "meshy"))
            kind = "text-to-3d-refine"
            extra["files"].append("texture_0.png")
            extra["texture_prompt"] = tpr or ""
        else:
            return J(400, {"message": "Invalid mode: must be preview or refine."})
        extra["mode"] = mode
    else:
        img = b.get("image_url")
        if not isinstance(img, str) or not img:
            return J(400, {"message": "Invalid image_url: image_url is required."})
        if img.startswith("data:"):
            try:
                raw = base64.b64decode(img.split(",", 1)[1], validate=True)
            except (ValueError, IndexError):
                return J(400, {"message": "Invalid image_url: bad data URI."})
            if not (raw.startswith(b"\x89PNG") or raw.startswith(b"\xff\xd8")):
                return J(400, {"message": "Invalid image_url: only jpg and png are supported."})
        elif not img.startswith(("http://", "https://")):
            return J(400, {"message": "Invalid image_url."})
        prompt = b.get("texture_prompt") or b.get("prompt") or ""
        markers = parse_markers(texts, "meshy")
        kind = "image-to-3d"
        if b.get("should_texture", True) is not False:
            extra["files"].append("texture_0.png")
        extra["texture_prompt"] = b.get("texture_prompt") or ""
    r = create_faults(ctx, "meshy", prompt, markers, MESHY_ERRS)
    if r:
        return r
    job = Job(fake, "meshy", kind, prompt, markers, b)
    job.extra = extra
    job.primary = {"model.glb"}
    fake.add(job)
    ctx.job = job
    ctx.accepted = True
    return Resp(202, {"result": job.id}, delay=hang_delay(markers, ctx.attempt))


def meshy_list(ctx, kind_prefix):
    fake = ctx.fake
    ctx.event = "list"
    try:
        page = int(ctx.q.get("page_num", "1"))
        size = int(ctx.q.get("page_size", "10"))
    except ValueError:
        return J(400, {"message": "Invalid pagination parameters."})
    if page < 1 or size < 1 or size > 50:
        return J(400, {"message": "Invalid pagination parameters: page_size must be 1-50."})
    sort = ctx.q.get("sort_by", "-created_at")
    if sort not in ("-created_at", "+created_at", "created_at"):
        return J(400, {"message": "Invalid sort_by."})
    with fake.lock:
        jobs = [j for j in fake.jobs.values()
                if j.provider == "meshy" and j.kind.startswith(kind_prefix)]
    jobs.sort(key=lambda j: (j.wall0, j.t0), reverse=sort.startswith("-"))
    sel = jobs[(page - 1) * size: page * size]
    return J(200, [meshy_task(ctx, j) for j in sel])


# --------------------------------------------------------------------------
# Google: Gemini image and Veo.

GOOGLE_ERRS = {
    "500": lambda: google_err(500, "INTERNAL", "An internal error has occurred."),
    "503": lambda: google_err(503, "UNAVAILABLE", "The model is overloaded. Please try again later."),
    "429": lambda: google_err(429, "RESOURCE_EXHAUSTED",
                              "Resource has been exhausted (e.g. check quota)."),
    "credits": lambda: google_err(400, "FAILED_PRECONDITION",
                                  "Billing is not enabled or prepayment credits are depleted."),
}
ASPECTS = {"1:1": (1024, 1024), "2:3": (832, 1248), "3:2": (1248, 832),
           "3:4": (864, 1184), "4:3": (1184, 864), "4:5": (896, 1152),
           "5:4": (1152, 896), "9:16": (768, 1344), "16:9": (1344, 768),
           "21:9": (1536, 672)}
IMAGE_SIZES = {"1K": 1, "2K": 2, "4K": 4}


def google_auth(ctx):
    k = ctx.hdr("x-goog-api-key") or ctx.q.get("key")
    if not k:
        return google_err(403, "PERMISSION_DENIED",
                          "Method doesn't allow unregistered callers (callers without "
                          "established identity). Please use API Key or other form of "
                          "API consumer identity to call this API.")
    if k != ctx.fake.key:
        return google_err(400, "INVALID_ARGUMENT",
                          "API key not valid. Please pass a valid API key.", "API_KEY_INVALID")
    return None


def route_gemini(ctx, parts):
    fake = ctx.fake
    ctx.provider = "gemini"
    p = "/".join(parts)
    if len(parts) >= 1 and parts[0] == "v1beta" and len(parts) == 3 and parts[1] == "files":
        ctx.provider = "veo"
        return veo_download(ctx, parts[2])
    r = google_auth(ctx)
    if r:
        if len(parts) == 3 and ":" in parts[2]:
            ctx.provider = "veo" if parts[2].endswith(":predictLongRunning") else "gemini"
            ctx.event = "create"
            ctx.accepted = False
        elif "operations" in parts:
            ctx.provider = "veo"
            ctx.event = "poll"
        return r
    if len(parts) == 3 and parts[:2] == ["v1beta", "models"] and ":" in parts[2] \
            and ctx.method == "POST":
        model, _, verb = parts[2].partition(":")
        if verb == "generateContent":
            return gemini_image(ctx, model)
        if verb == "predictLongRunning":
            ctx.provider = "veo"
            return veo_create(ctx, model)
    if len(parts) == 5 and parts[:2] == ["v1beta", "models"] and parts[3] == "operations" \
            and ctx.method == "GET":
        ctx.provider = "veo"
        ctx.event = "poll"
        return veo_poll(ctx, parts[2], parts[4])
    return google_err(404, "NOT_FOUND", "Requested entity was not found: /%s" % p)


def gemini_image(ctx, model):
    fake = ctx.fake
    ctx.event = "create"
    ctx.accepted = False
    if "image" not in model:
        return google_err(404, "NOT_FOUND", "models/%s is not found for API version v1beta, "
                          "or is not supported for generateContent." % model)
    b = ctx.body
    if ctx.bad_json or not isinstance(b, dict):
        return google_err(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
    contents = b.get("contents")
    if not isinstance(contents, list) or not contents:
        return google_err(400, "INVALID_ARGUMENT", "* GenerateContentRequest.contents: "
                          "contents is not specified")
    texts = []
    for c in contents:
        parts = c.get("parts") if isinstance(c, dict) else None
        if not isinstance(parts, list) or not parts:
            return google_err(400, "INVALID_ARGUMENT",
                              "* GenerateContentRequest.contents.parts: contents.parts must not be empty.")
        for part in parts:
            if not isinstance(part, dict):
                return google_err(400, "INVALID_ARGUMENT", "Invalid part.")
            if isinstance(part.get("text"), str):
                texts.append(part["text"])
            inl = part.get("inlineData") or part.get("inline_data")
            if inl is not None:
                try:
                    base64.b64decode(inl.get("data", ""), validate=True)
                except (ValueError, AttributeError):
                    return google_err(400, "INVALID_ARGUMENT", "Unable to process input image.")
    gc = b.get("generationConfig") or {}
    ic = gc.get("imageConfig") or {}
    ar = ic.get("aspectRatio", "1:1")
    if ar not in ASPECTS:
        return google_err(400, "INVALID_ARGUMENT", "Unsupported aspect ratio: %s" % ar)
    size = ic.get("imageSize", "1K")
    if size not in IMAGE_SIZES:
        return google_err(400, "INVALID_ARGUMENT", "Unsupported image size: %s" % size)
    prompt = "\n".join(texts)
    markers = parse_markers(texts, "gemini")
    r = create_faults(ctx, "gemini", prompt, markers, GOOGLE_ERRS)
    if r:
        return r
    job = Job(fake, "gemini", "image", prompt, markers, b)
    fake.add(job)
    ctx.job = job
    ctx.accepted = True
    delay = hang_delay(markers, ctx.attempt) or (job.duration or 0) / 1000.0
    # Output tokens per image: 1290 (2.5 Flash), 1120 (Pro 1K/2K), 2000 (Pro 4K).
    otok = (2000 if size == "4K" else 1120) if "pro" in model else 1290
    usage = {"promptTokenCount": max(1, len(prompt) // 4), "candidatesTokenCount": otok,
             "totalTokenCount": max(1, len(prompt) // 4) + otok}
    out = {"usageMetadata": usage, "modelVersion": model,
           "responseId": rid(22, string.ascii_letters + string.digits)}
    mods = gc.get("responseModalities")
    if "blocked" in markers:
        out["candidates"] = [{"finishReason": "IMAGE_SAFETY", "index": 0}]
    elif "fail" in markers or (isinstance(mods, list) and "IMAGE" not in mods):
        out["candidates"] = [{"content": {"role": "model", "parts": [
            {"text": "I'm unable to create that image. Could you describe it differently?"}]},
            "finishReason": "STOP", "index": 0}]
    else:
        w, h = ASPECTS[ar]
        k = IMAGE_SIZES[size] if ("pro" in model or model.startswith("gemini-3.1-flash-image")) else 1
        if "badtype" in markers:
            data = fake.media.build("mp3", job.id)
        elif "same" in markers:
            data = fake.media.png(w * k, h * k)
        else:
            data = png_tag(fake.media.png(w * k, h * k), job.id)
        out["candidates"] = [{"content": {"role": "model", "parts": [
            {"text": "Here is the image you asked for."},
            {"inlineData": {"mimeType": "image/png",
                            "data": base64.b64encode(data).decode()}}]},
            "finishReason": "STOP", "index": 0}]
    resp = J(200, out)
    resp.delay = delay
    sync_faults(resp, markers)
    ctx.sync_job = job
    return resp


def sync_faults(resp, markers):
    if "html" in markers:
        resp.body = HTML_ERROR
        resp.ctype = "text/html; charset=utf-8"
    if "truncated" in markers:
        resp.truncate = True


VEO_DURATIONS = {"veo-2": (5, 6, 7, 8), "veo-3": (4, 6, 8)}


def veo31_inputs(model, i0, par):
    """Veo 3.1's frame controls: lastFrame needs image; referenceImages
    (at most 3, type asset or style) need 8 s and a prompt."""
    if i0.get("lastFrame") is not None and i0.get("image") is None:
        return google_err(400, "INVALID_ARGUMENT", "lastFrame requires image.")
    refs = i0.get("referenceImages")
    if refs is None:
        return None
    if not model.startswith("veo-3.1"):
        return google_err(400, "INVALID_ARGUMENT", "referenceImages is not supported by %s." % model)
    if not isinstance(refs, list) or not 1 <= len(refs) <= 3:
        return google_err(400, "INVALID_ARGUMENT", "referenceImages takes 1 to 3 images.")
    for ref in refs:
        im = ref.get("image") if isinstance(ref, dict) else None
        try:
            raw = base64.b64decode((im or {}).get("bytesBase64Encoded", ""), validate=True)
            if not raw or im.get("mimeType") not in ("image/png", "image/jpeg"):
                raise ValueError
        except (ValueError, AttributeError):
            return google_err(400, "INVALID_ARGUMENT", "Unable to process reference image.")
        if ref.get("referenceType") not in ("asset", "style"):
            return google_err(400, "INVALID_ARGUMENT", "referenceType must be asset or style.")
    if par.get("durationSeconds", 8) != 8:
        return google_err(400, "INVALID_ARGUMENT", "referenceImages requires durationSeconds 8.")
    if not i0.get("prompt"):
        return google_err(400, "INVALID_ARGUMENT", "referenceImages requires a prompt.")
    return None


def veo_create(ctx, model):
    fake = ctx.fake
    ctx.event = "create"
    ctx.accepted = False
    if not model.startswith("veo-"):
        return google_err(404, "NOT_FOUND", "models/%s is not found for API version v1beta, "
                          "or is not supported for predictLongRunning." % model)
    b = ctx.body
    if ctx.bad_json or not isinstance(b, dict):
        return google_err(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
    inst = b.get("instances")
    if not isinstance(inst, list) or len(inst) != 1 or not isinstance(inst[0], dict):
        return google_err(400, "INVALID_ARGUMENT", "instances must hold exactly one instance.")
    i0 = inst[0]
    prompt = i0.get("prompt")
    if prompt is not None and not isinstance(prompt, str):
        return google_err(400, "INVALID_ARGUMENT", "prompt must be a string.")
    if not prompt and not i0.get("image"):
        return google_err(400, "INVALID_ARGUMENT", "A prompt or an image is required.")
    for key in ("image", "lastFrame"):
        im = i0.get(key)
        if im is not None:
            try:
                raw = base64.b64decode(im.get("bytesBase64Encoded", ""), validate=True)
                if not raw or im.get("mimeType") not in ("image/png", "image/jpeg"):
                    raise ValueError
            except (ValueError, AttributeError):
                return google_err(400, "INVALID_ARGUMENT", "Unable to process input image.")
    par = b.get("parameters") or {}
    if not isinstance(par, dict):
        return google_err(400, "INVALID_ARGUMENT", "parameters must be an object.")
    r = veo31_inputs(model, i0, par)
    if r:
        return r
    ar = par.get("aspectRatio", "16:9")
    if ar not in ("16:9", "9:16"):
        return google_err(400, "INVALID_ARGUMENT", "Aspect ratio %s is not supported; "
                          "use 16:9 or 9:16." % ar)
    fam = "veo-2" if model.startswith("veo-2") else "veo-3"
    dur = par.get("durationSeconds", 8)
    if isinstance(dur, bool) or not isinstance(dur, (int, float)) or dur not in VEO_DURATIONS[fam]:
        return google_err(400, "INVALID_ARGUMENT", "durationSeconds %s is not supported by %s; "
                          "allowed: %s." % (dur, model, VEO_DURATIONS[fam]))
    res = par.get("resolution", "720p")
    allowed = ("720p", "1080p", "4k") if model.startswith("veo-3.1") else ("720p", "1080p")
    if fam == "veo-2":
        allowed = ("720p",)
    if res not in allowed:
        return google_err(400, "INVALID_ARGUMENT", "Resolution %s is not supported by %s." % (res, model))
    if res in ("1080p", "4k") and dur != 8:
        return google_err(400, "INVALID_ARGUMENT", "Resolution %s requires durationSeconds 8." % res)
    pg = par.get("personGeneration")
    if pg is not None and pg not in ("allow_all", "allow_adult", "dont_allow"):
        return google_err(400, "INVALID_ARGUMENT", "Invalid personGeneration.")
    prompt = prompt or ""
    markers = parse_markers(body_prompt_texts(b), "veo")
    r = create_faults(ctx, "veo", prompt, markers, GOOGLE_ERRS)
    if r:
        return r
    op = rid(12)
    job = Job(fake, "veo", "video", prompt, markers, b, jid=op)
    job.extra = {"model": model, "files": ["video.mp4"]}
    job.primary = {"video.mp4"}
    fake.add(job)
    ctx.job = job
    ctx.accepted = True
    return Resp(200, {"name": "models/%s/operations/%s" % (model, op)},
                delay=hang_delay(markers, ctx.attempt))


def veo_poll(ctx, model, op):
    fake = ctx.fake
    job = fake.get(op)
    if job is None or job.provider != "veo" or job.extra.get("model") != model:
        return google_err(404, "NOT_FOUND", "Operation not found: models/%s/operations/%s" % (model, op))
    ctx.job = job
    name = "models/%s/operations/%s" % (model, op)
    _, done = job.phase()
    if not done:
        return J(200, {"name": name})
    out = {"name": name, "done": True}
    if "fail" in job.markers:
        out["error"] = {"code": 3, "message": "Video generation failed. Please try again "
                        "with a different prompt."}
    elif "blocked" in job.markers:
        out["response"] = {
            "@type": "type.googleapis.com/google.ai.generativelanguage.v1beta.PredictLongRunningResponse",
            "generateVideoResponse": {
                "raiMediaFilteredCount": 1,
                "raiMediaFilteredReasons": ["The prompt could not be submitted: it may "
                                            "violate the usage guidelines."]}}
    else:
        g = fake.bump(job)
        uri = "%s/gemini/v1beta/files/%s-%d:download?alt=media" % (ctx.base(), op, g)
        out["response"] = {
            "@type": "type.googleapis.com/google.ai.generativelanguage.v1beta.PredictLongRunningResponse",
            "generateVideoResponse": {"generatedSamples": [{"video": {"uri": uri}}]}}
    fake.final(job)
    return J(200, out)


def veo_download(ctx, spec):
    fake = ctx.fake
    ctx.event = "download"
    fid, _, verb = spec.partition(":")
    op, _, g = fid.rpartition("-")
    job = fake.get(op)
    if verb != "download" or job is None or job.provider != "veo" or not g.isdigit() \
            or int(g) < 1 or ctx.method not in ("GET", "HEAD"):
        return google_err(404, "NOT_FOUND", "File not found.")
    ctx.job = job
    ctx.key_sent = key_sent(ctx)
    r = google_auth(ctx)
    if r:
        return r
    if "redirect" in job.markers:
        port = fake.port
        loc = "http://localhost:%d/files/veo/%s/%s/video.mp4?Expires=%d" % (
            port, op, g, int(time.time()) + 172800)
        return Resp(302, b"", "text/plain", {"Location": loc})
    return serve_file(ctx, job, "video.mp4", int(g))


# --------------------------------------------------------------------------
# Suno (sunoapi.org).

SUNO_ERRS = {
    "500": lambda: J(200, {"code": 500, "msg": "Server error, please try again later.", "data": None}),
    "503": lambda: J(503, {"code": 503, "msg": "Service unavailable.", "data": None}),
    "429": lambda: J(429, {"code": 430, "msg": "Your call frequency is too high. "
                           "Please try again later.", "data": None}),
    "credits": lambda: J(200, {"code": 429, "msg": "The current credits are insufficient. "
                               "Please top up.", "data": None}),
}
SUNO_MODELS = ("V3_5", "V4", "V4_5", "V4_5PLUS", "V4_5ALL", "V5", "V5_5")


def suno_bad(msg, code=400):
    return J(200, {"code": code, "msg": msg, "data": None})


def route_suno(ctx, parts):
    fake = ctx.fake
    ctx.provider = "suno"
    p = "/".join(parts)
    if ctx.bearer() != fake.key:
        if p == "api/v1/generate":
            ctx.event = "create"
            ctx.accepted = False
        elif p == "api/v1/generate/record-info":
            ctx.event = "poll"
        return J(200, {"code": 401, "msg": "You do not have access permissions.", "data": None})
    if p == "api/v1/generate" and ctx.method == "POST":
        return suno_create(ctx)
    if p == "api/v1/generate/record-info" and ctx.method == "GET":
        ctx.event = "poll"
        return suno_poll(ctx)
    if p == "api/v1/generate/credit" and ctx.method == "GET":
        return J(200, {"code": 200, "msg": "success", "data": 120})
    return J(404, {"code": 404, "msg": "Not found.", "data": None})


def suno_create(ctx):
    fake = ctx.fake
    ctx.event = "create"
    ctx.accepted = False
    b = ctx.body
    if ctx.bad_json or not isinstance(b, dict):
        return suno_bad("Invalid request body.")
    cm, ins = b.get("customMode"), b.get("instrumental")
    if not isinstance(cm, bool):
        return suno_bad("customMode is required and must be a boolean.")
    if not isinstance(ins, bool):
        return suno_bad("instrumental is required and must be a boolean.")
    model = b.get("model", "V4_5")
    if model not in SUNO_MODELS:
        return suno_bad("Invalid model: %s." % model)
    prompt = b.get("prompt") or ""
    style = b.get("style") or ""
    title = b.get("title") or ""
    old = model in ("V3_5", "V4")
    if not cm:
        if not prompt:
            return suno_bad("prompt is required in non-custom mode.")
        if len(prompt) > 500:
            return suno_bad("prompt is too long (max 500 characters).", 413)
    else:
        if not style or not title:
            return suno_bad("style and title are required in custom mode.")
        if not ins and not prompt:
            return suno_bad("prompt (lyrics) is required in custom mode unless instrumental.")
        if len(prompt) > (3000 if old else 5000):
            return suno_bad("prompt is too long.", 413)
        if len(style) > (200 if old else 1000):
            return suno_bad("style is too long.", 413)
        if len(title) > (80 if old else 100):
            return suno_bad("title is too long.", 413)
    key = prompt or style or title
    markers = parse_markers(body_prompt_texts(b), "suno")
    r = create_faults(ctx, "suno", key, markers, SUNO_ERRS)
    if r:
        return r
    job = Job(fake, "suno", "music", key, markers, b, jid=uuid.uuid4().hex)
    c1, c2 = uuid.uuid4().hex[:8], uuid.uuid4().hex[:8]
    job.extra = {"instrumental": ins, "model": model, "clips": [c1, c2],
                 "files": [c1 + ".mp3", c2 + ".mp3", c1 + ".jpg", c2 + ".jpg"]}
    job.primary = {c1 + ".mp3", c2 + ".mp3"}
    fake.add(job)
    ctx.job = job
    ctx.accepted = True
    return Resp(200, {"code": 200, "msg": "success", "data": {"taskId": job.id}},
                delay=hang_delay(markers, ctx.attempt))


def suno_poll(ctx):
    fake = ctx.fake
    tid = ctx.q.get("taskId")
    if not tid:
        return suno_bad("taskId is required.")
    job = fake.get(tid)
    if job is None or job.provider != "suno":
        return suno_bad("taskId does not exist.")
    ctx.job = job
    frac, done = job.phase()
    b = job.body
    param = {k: v for k, v in b.items() if k != "callBackUrl"}
    d = {"taskId": job.id, "parentMusicId": "",
         "param": json.dumps(param, separators=(",", ":")),
         "response": None, "status": "PENDING", "type": "chirp-" + job.extra["model"].lower(),
         "operationType": "generate", "errorCode": None, "errorMessage": None}
    if done and "fail" in job.markers:
        d["status"] = "GENERATE_AUDIO_FAILED"
        d["errorCode"] = 501
        d["errorMessage"] = "Audio generation failed."
        fake.final(job)
        return J(200, {"code": 200, "msg": "success", "data": d})
    if done and "blocked" in job.markers:
        d["status"] = "SENSITIVE_WORD_ERROR"
        d["errorCode"] = 400
        d["errorMessage"] = "The description contains sensitive words."
        fake.final(job)
        return J(200, {"code": 200, "msg": "success", "data": d})
    if frac < 0.25 and not done:
        return J(200, {"code": 200, "msg": "success", "data": d})
    g = fake.bump(job)
    items = []
    for n, c in enumerate(job.extra["clips"]):
        ready = done or (n == 0 and frac >= 0.5)
        items.append({
            "id": c, "audioUrl": ctx.file_url(job, c + ".mp3", g) if ready else "",
            "sourceAudioUrl": "",
            "streamAudioUrl": "%s/files/suno/%s/%d/%s.mp3?stream=1" % (ctx.base(), job.id, g, c),
            "imageUrl": ctx.file_url(job, c + ".jpg", g),
            "prompt": "" if job.extra["instrumental"] else (b.get("prompt") or ""),
            "modelName": "chirp-" + job.extra["model"].lower().replace("_", "-"),
            "title": b.get("title") or "Untitled", "tags": b.get("style") or "",
            "createTime": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(job.wall0 / 1000)),
            "duration": 1.04 if ready else None})
    d["response"] = {"taskId": job.id, "sunoData": items}
    if done:
        d["status"] = "SUCCESS"
        fake.final(job)
    else:
        d["status"] = "FIRST_SUCCESS" if frac >= 0.5 else "TEXT_SUCCESS"
    return J(200, {"code": 200, "msg": "success", "data": d})


# --------------------------------------------------------------------------
# ElevenLabs sound generation.


def el_err(status, code, msg):
    return J(status, {"detail": {"status": code, "message": msg}})


EL_ERRS = {
    "500": lambda: el_err(500, "internal_server_error", "An internal error occurred."),
    "503": lambda: el_err(503, "service_unavailable", "The service is temporarily unavailable."),
    "429": lambda: el_err(429, "too_many_concurrent_requests",
                          "Too many concurrent requests for your plan."),
    "credits": lambda: el_err(401, "quota_exceeded",
                              "This request exceeds your quota. You have 0 credits remaining."),
}


def route_elevenlabs(ctx, parts):
    fake = ctx.fake
    ctx.provider = "elevenlabs"
    p = "/".join(parts)
    if p != "v1/sound-generation" or ctx.method != "POST":
        return el_err(404, "not_found", "Not found.")
    ctx.event = "create"
    ctx.accepted = False
    k = ctx.hdr("xi-api-key")
    if k != fake.key:
        return el_err(401, "invalid_api_key", "Invalid API key.")
    of = ctx.q.get("output_format", "mp3_44100_128")
    if not re.fullmatch(r"mp3_\d+_\d+", of):
        return el_err(422, "invalid_output_format",
                      "output_format %s is not served by this server (mp3_* only)." % of)
    b = ctx.body
    if ctx.bad_json or not isinstance(b, dict):
        return el_err(400, "invalid_request", "Request body must be a JSON object.")
    text = b.get("text")
    if not isinstance(text, str) or not text.strip():
        return el_err(422, "invalid_text", "text is required.")
    dur = b.get("duration_seconds")
    if dur is not None and (isinstance(dur, bool) or not isinstance(dur, (int, float))
                            or not 0.5 <= dur <= 30):
        return el_err(422, "invalid_duration", "duration_seconds must be between 0.5 and 30.")
    pi = b.get("prompt_influence")
    if pi is not None and (isinstance(pi, bool) or not isinstance(pi, (int, float))
                           or not 0 <= pi <= 1):
        return el_err(422, "invalid_prompt_influence", "prompt_influence must be between 0 and 1.")
    if b.get("loop") is not None and not isinstance(b.get("loop"), bool):
        return el_err(422, "invalid_loop", "loop must be a boolean.")
    if b.get("loop") and b.get("model_id", "eleven_text_to_sound_v2") != "eleven_text_to_sound_v2":
        return el_err(422, "invalid_loop", "loop is only supported by eleven_text_to_sound_v2.")
    markers = parse_markers([text], "elevenlabs")
    r = create_faults(ctx, "elevenlabs", text, markers, EL_ERRS)
    if r:
        return r
    job = Job(fake, "elevenlabs", "sfx", text, markers, b)
    fake.add(job)
    ctx.job = job
    ctx.accepted = True
    delay = hang_delay(markers, ctx.attempt) or (job.duration or 0) / 1000.0
    if "fail" in markers or "blocked" in markers:
        resp = el_err(400, "generation_failed", "Sound generation failed for this prompt.")
    else:
        if "badtype" in markers:
            data = fake.media.build("png", job.id)
        else:
            data = promised_audio(fake, markers, dur,
                                  b"" if "same" in markers else job.id.encode())
            if data is None:
                data = fake.media.build("mp3", "" if "same" in markers else job.id)
        resp = Resp(200, data, "audio/mpeg", {"request-id": uuid.uuid4().hex})
    resp.delay = delay
    sync_faults(resp, markers)
    ctx.sync_job = job
    return resp


# --------------------------------------------------------------------------
# Blockade Labs Skybox.

BL_ERRS = {
    "500": lambda: J(500, {"error": "Server Error"}),
    "503": lambda: J(503, {"error": "Service Unavailable"}),
    "429": lambda: J(429, {"error": "Too Many Attempts."}),
    "credits": lambda: J(403, {"error": "You do not have enough credits for this request."}),
}
EXPORT_TYPES = {1: ("equirectangular-jpg", "jpg"), 2: ("equirectangular-png", "png"),
                4: ("hdri-hdr", "hdr"), 5: ("hdri-exr", "exr"), 6: ("depth-map-png", "png")}
EXPORT_NAMES = {1: "JPG", 2: "PNG", 3: "Cube Map", 4: "HDRI HDR", 5: "HDRI EXR",
                6: "Depth Map", 7: "Video Landscape", 8: "Video Portrait", 9: "Video Square"}


def blockade_obj(ctx, job):
    fake = ctx.fake
    frac, done = job.phase()
    o = {"id": job.extra["num"], "obfuscated_id": job.extra["obf"], "user_id": 1,
         "title": "World #%d" % job.extra["num"], "prompt": job.body.get("prompt"),
         "negative_text": job.body.get("negative_text"),
         "skybox_style_id": job.extra["style"], "skybox_style_name": "M3 Photoreal",
         "seed": job.extra["seed"], "queue_position": 0, "status": "pending",
         "type": "skybox", "file_url": "", "thumb_url": "", "depth_map_url": "",
         "error_message": None,
         "pusher_channel": "status_update_" + job.extra["obf"],
         "pusher_event": "status_update", "webhook_url": job.body.get("webhook_url"),
         "created_at": iso(job.wall0), "updated_at": iso(job.wall0)}
    if job.extra.get("aborted"):
        # DELETE /api/v1/imagine/requests/{id} "sets the status to abort".
        o["status"] = "abort"
        return o
    if not done:
        if frac < 0.2:
            o["queue_position"] = 1
        else:
            o["status"] = "dispatched" if frac < 0.4 else "processing"
            o["updated_at"] = iso(job.at(frac))
        return o
    o["updated_at"] = iso(job.at(1.0))
    if job.failed():
        o["status"] = "error"
        o["error_message"] = "Skybox generation failed: the prompt could not be processed."
    else:
        g = fake.bump(job)
        o["status"] = "complete"
        o["file_url"] = ctx.file_url(job, "skybox.jpg", g)
        o["thumb_url"] = ctx.file_url(job, "thumb.jpg", g)
        o["depth_map_url"] = ctx.file_url(job, "depth.jpg", g)
    return o


def export_obj(ctx, job):
    fake = ctx.fake
    frac, done = job.phase()
    tid = job.extra["type_id"]
    o = {"id": job.id, "file_url": "", "type": EXPORT_TYPES[tid][0], "type_id": tid,
         "status": "pending", "queue_position": 0, "error_message": None,
         "skybox_obfuscated_id": job.extra["skybox"], "webhook_url": None,
         "pusher_channel": "export_status_update_" + job.id, "pusher_event": "status_update",
         "created_at": iso(job.wall0)}
    if job.extra.get("aborted"):
        o["status"] = "abort"
        return o
    if not done:
        o["status"] = "pending" if frac < 0.2 else "processing"
        return o
    if "exportfail" in job.markers:
        o["status"] = "error"
        o["error_message"] = "Export failed."
    else:
        g = fake.bump(job)
        o["status"] = "complete"
        o["file_url"] = ctx.file_url(job, job.extra["files"][0], g)
    fake.final(job)
    return o


def route_blockade(ctx, parts):
    fake = ctx.fake
    ctx.provider = "blockade"
    p = "/".join(parts)
    k = ctx.hdr("x-api-key") or ctx.q.get("api_key")
    is_create = ctx.method == "POST" and p in ("api/v1/skybox", "api/v1/skybox/export")
    if k != fake.key:
        if is_create:
            ctx.event = "create"
            ctx.accepted = False
        if not k:
            return J(401, {"error": "Unauthenticated."})
        return J(403, {"error": "Invalid API key."})
    if p == "api/v1/skybox" and ctx.method == "POST":
        return blockade_create(ctx)
    if p == "api/v1/skybox/export" and ctx.method == "POST":
        return blockade_export(ctx)
    if p == "api/v1/skybox/export" and ctx.method == "GET":
        return J(200, [{"id": i, "name": n, "key": EXPORT_TYPES.get(i, ("premium",))[0]}
                       for i, n in EXPORT_NAMES.items()])
    if p == "api/v1/skybox/styles" and ctx.method == "GET":
        return J(200, [{"id": 67, "name": "M3 Photoreal", "max-char": 550,
                        "negative-text-max-char": 200, "model": "Model 3",
                        "model_version": "3", "sort_order": 1, "premium": 0}])
    if ctx.method == "DELETE":
        return blockade_cancel(ctx, parts)
    if len(parts) == 5 and p.startswith("api/v1/skybox/export/") and ctx.method == "GET":
        ctx.event = "poll"
        job = fake.get(parts[4])
        if job is None or job.kind != "export":
            return J(404, {"error": "Export not found."})
        ctx.job = job
        return J(200, export_obj(ctx, job))
    if p == "api/v1/imagine/myRequests" and ctx.method == "GET":
        return blockade_history(ctx)
    if p.startswith("api/v1/imagine/requests/") and ctx.method == "GET":
        ctx.event = "poll"
        rest = parts[4:]
        key = None
        if len(rest) == 1:
            key = "n" + rest[0]
        elif len(rest) == 2 and rest[0] == "obfuscated-id":
            key = "o" + rest[1]
        job = fake.get(key) if key else None
        if job is None or job.kind != "skybox":
            return J(404, {"error": "Request not found."})
        ctx.job = job
        o = blockade_obj(ctx, job)
        if o["status"] in ("complete", "error", "abort"):
            fake.final(job)
        return J(200, {"request": o})
    return J(404, {"error": "Not found."})


def blockade_cancel(ctx, parts):
    """DELETE of a request (by its id), of every pending one, or of an
    export: the status becomes abort; the answer is {"success": true}.
    A finished one cannot be cancelled (the answer then is the fake's)."""
    fake = ctx.fake
    p = "/".join(parts)
    if p == "api/v1/imagine/requests/pending":
        with fake.lock:
            jobs = [j for j in fake.jobs.values() if j.provider == "blockade" and
                    j.kind == "skybox" and not j.phase()[1] and j.phase()[0] < 0.2]
        for j in jobs:
            j.extra["aborted"] = True
        return J(200, {"success": True})
    if len(parts) == 5 and p.startswith("api/v1/imagine/requests/"):
        job, kind = fake.get("n" + parts[4]), "skybox"
    elif len(parts) == 5 and p.startswith("api/v1/skybox/export/"):
        job, kind = fake.get(parts[4]), "export"
    else:
        return J(404, {"error": "Not found."})
    if job is None or job.provider != "blockade" or job.kind != kind:
        return J(404, {"error": "Request not found."})
    ctx.job = job
    if job.phase()[1] and not job.extra.get("aborted"):
        return J(422, {"error": "The request is already finished."})
    job.extra["aborted"] = True
    return J(200, {"success": True})


def blockade_history(ctx):
    """GET /api/v1/imagine/myRequests: the account's skybox requests,
    newest first (order=ASC: oldest), limit 1-100 (default 18), offset,
    query (a substring of the prompt)."""
    fake = ctx.fake
    ctx.event = "list"
    try:
        limit = int(ctx.q.get("limit", "18"))
        offset = int(ctx.q.get("offset", "0"))
    except ValueError:
        return J(422, {"message": "The limit must be an integer.", "errors": {}})
    if not 1 <= limit <= 100 or offset < 0:
        return J(422, {"message": "Invalid limit or offset.", "errors": {}})
    q = ctx.q.get("query") or ""
    with fake.lock:
        jobs = [j for j in fake.jobs.values()
                if j.provider == "blockade" and j.kind == "skybox"
                and q in (j.body.get("prompt") or "")]
    jobs.sort(key=lambda j: (j.wall0, j.t0),
              reverse=ctx.q.get("order", "DESC").upper() != "ASC")
    sel = jobs[offset:offset + limit]
    return J(200, {"data": [blockade_obj(ctx, j) for j in sel],
                   "totalCount": len(jobs),
                   "has_more": offset + limit < len(jobs)})


def blockade_create(ctx):
    fake = ctx.fake
    ctx.event = "create"
    ctx.accepted = False
    b = ctx.body
    if ctx.bad_json or not isinstance(b, dict):
        return J(400, {"error": "Invalid request body."})
    prompt = b.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        return J(422, {"message": "The prompt field is required.",
                       "errors": {"prompt": ["The prompt field is required."]}})
    mv = b.get("model_version", 3)
    if mv not in (3, 4):
        return J(422, {"message": "The selected model version is invalid.",
                       "errors": {"model_version": ["The selected model version is invalid."]}})
    limit = 2000 if mv == 4 else 550
    if len(prompt) > limit:
        return J(422, {"message": "The prompt may not be greater than %d characters." % limit,
                       "errors": {"prompt": ["The prompt may not be greater than %d characters." % limit]}})
    if b.get("variant_id") is not None and (mv != 4 or not isinstance(b.get("variant_id"), int)):
        return J(422, {"message": "The variant id is invalid for this model.",
                       "errors": {"variant_id": ["The variant id is invalid for this model."]}})
    style = b.get("skybox_style_id", 67)
    try:
        style = int(style)
    except (TypeError, ValueError):
        return J(422, {"message": "The skybox style id must be an integer.",
                       "errors": {"skybox_style_id": ["The skybox style id must be an integer."]}})
    markers = parse_markers(body_prompt_texts(b), "blockade")
    r = create_faults(ctx, "blockade", prompt, markers, BL_ERRS)
    if r:
        return r
    with fake.lock:
        fake.blockade_seq += 1
        num = fake.blockade_seq
    obf = uuid.uuid4().hex[:14]
    job = Job(fake, "blockade", "skybox", prompt, markers, b, jid="n%d" % num)
    try:
        seed = int(b.get("seed") or 0) or random.randint(1, 1 << 30)
    except (TypeError, ValueError):
        seed = 1
    job.extra = {"num": num, "obf": obf, "style": style, "seed": seed,
                 "files": ["skybox.jpg", "thumb.jpg", "depth.jpg"]}
    job.primary = {"skybox.jpg"}
    fake.add(job, alias="o" + obf)
    ctx.job = job
    ctx.accepted = True
    return Resp(200, blockade_obj(ctx, job), delay=hang_delay(markers, ctx.attempt))


def blockade_export(ctx):
    fake = ctx.fake
    ctx.event = "create"
    ctx.accepted = False
    b = ctx.body
    if ctx.bad_json or not isinstance(b, dict):
        return J(400, {"error": "Invalid request body."})
    sid = b.get("skybox_id")
    try:
        tid = int(b.get("type_id"))
    except (TypeError, ValueError):
        tid = None
    if tid is None or tid not in EXPORT_NAMES:
        return J(422, {"message": "The selected type id is invalid.",
                       "errors": {"type_id": ["The selected type id is invalid."]}})
    if tid not in EXPORT_TYPES:
        return J(422, {"message": "Export type %d is not available on this server." % tid,
                       "errors": {"type_id": ["Export type not available."]}})
    sky = fake.get("o%s" % sid) if sid is not None else None
    if sky is None:
        sky = fake.get("n%s" % sid) if sid is not None else None
    if sky is None or sky.kind != "skybox":
        return J(404, {"error": "Skybox not found."})
    _, done = sky.phase()
    if not done or sky.failed():
        return J(422, {"message": "The skybox is not complete.",
                       "errors": {"skybox_id": ["The skybox is not complete."]}})
    markers = dict(sky.markers)
    r = create_faults(ctx, "blockade", sky.prompt, markers, BL_ERRS)
    if r:
        return r
    ext = EXPORT_TYPES[tid][1]
    job = Job(fake, "blockade", "export", sky.prompt, markers, b, jid=uuid.uuid4().hex)
    if tid in (1, 6):
        job.duration = 0
    name = "export_%d.%s" % (tid, ext)
    job.extra = {"type_id": tid, "skybox": sky.extra["obf"], "files": [name]}
    if ext == "png":
        job.sizes[name] = (1024, 512)
    job.primary = {name}
    fake.add(job)
    ctx.job = job
    ctx.accepted = True
    return Resp(200, export_obj(ctx, job), delay=hang_delay(markers, ctx.attempt))


# --------------------------------------------------------------------------
# fal.ai queue.


def fal_err(status, detail):
    return J(status, {"detail": detail})


FAL_ERRS = {
    "500": lambda: fal_err(500, "Internal Server Error"),
    "503": lambda: fal_err(503, "Service Unavailable"),
    "429": lambda: fal_err(429, "Rate limit exceeded. Please retry later."),
    "credits": lambda: fal_err(403, "User is locked. Reason: Exhausted balance. "
                               "Top up your balance at fal.ai/dashboard/billing."),
}
FAL_IMAGE_SIZES = {"square_hd": (1024, 1024), "square": (512, 512),
                   "portrait_4_3": (768, 1024), "portrait_16_9": (576, 1024),
                   "landscape_4_3": (1024, 768), "landscape_16_9": (1024, 576)}


def fal_kind(app):
    a = app.lower()
    if any(w in a for w in ("video", "veo", "kling", "t2v", "i2v", "wan", "luma")):
        return "video"
    if any(w in a for w in ("3d", "trellis", "tripo", "mesh")):
        return "model_3d"
    if any(w in a for w in ("audio", "sound", "music", "sfx", "tts", "speech")):
        return "audio"
    return "image"


def fal_urls(ctx, app, rid_):
    base = "%s/fal/%s/requests/%s" % (ctx.base(), app, rid_)
    return {"response_url": base, "status_url": base + "/status",
            "cancel_url": base + "/cancel"}


def fal_missing_input(body):
    return not any(body.get(k) for k in ("prompt", "image_url", "text", "input", "image_urls"))


def route_fal(ctx, parts):
    fake = ctx.fake
    ctx.provider = "fal"
    a = ctx.hdr("Authorization") or ""
    is_req = "requests" in parts[2:3]
    if len(parts) < 2:
        return fal_err(404, "Not Found")
    app = parts[0] + "/" + parts[1]
    if not is_req and ctx.method == "POST":
        ctx.event = "create"
        ctx.accepted = False
    elif is_req:
        ctx.event = "poll"
    if not a:
        return fal_err(401, "Missing authorization header.")
    if a[:4] != "Key " or a[4:].strip() != fake.key:
        return fal_err(401, "No user found for Key ID and Secret.")
    if not is_req:
        if ctx.method != "POST":
            return fal_err(405, "Method Not Allowed")
        return fal_create(ctx, app, "/".join(parts))
    if len(parts) < 4:
        return fal_err(404, "Not Found")
    job = fake.get(parts[3])
    if job is None or job.provider != "fal" or job.extra["app"] != app:
        return fal_err(404, "Request not found.")
    ctx.job = job
    tail = parts[4:]
    if tail == ["status"] and ctx.method == "GET":
        return fal_status(ctx, job)
    if tail == [] and ctx.method == "GET":
        return fal_result(ctx, job)
    if tail == ["cancel"] and ctx.method == "PUT":
        ctx.event = "other"
        frac, done = job.phase()
        if done:
            return J(400, {"status": "ALREADY_COMPLETED"})
        if frac < 0.3:
            job.markers["fail"] = "canceled"
            job.duration = 0
            return J(202, {"status": "CANCELLATION_REQUESTED"})
        return J(400, {"status": "ALREADY_STARTED"})
    return fal_err(404, "Not Found")


def fal_create(ctx, app, model_path):
    fake = ctx.fake
    b = ctx.body
    if ctx.bad_json or not isinstance(b, dict):
        return fal_err(422, [{"loc": ["body"], "msg": "Input should be a valid JSON object.",
                              "type": "model_attributes_type"}])
    prompt = b.get("prompt") or b.get("text") or ""
    if not isinstance(prompt, str):
        prompt = json.dumps(prompt)
    markers = parse_markers(body_prompt_texts(b), "fal")
    r = create_faults(ctx, "fal", prompt, markers, FAL_ERRS)
    if r:
        return r
    job = Job(fake, "fal", fal_kind(model_path), prompt, markers, b)
    kind = job.kind
    ext = {"video": "mp4", "model_3d": "glb", "audio": "mp3", "image": "png"}[kind]
    name = "output." + ext
    if kind == "image":
        sz = b.get("image_size")
        if isinstance(sz, dict):
            try:
                job.sizes[name] = (int(sz.get("width", 1024)), int(sz.get("height", 1024)))
            except (TypeError, ValueError):
                pass
        elif sz in FAL_IMAGE_SIZES:
            job.sizes[name] = FAL_IMAGE_SIZES[sz]
        job.sizes.setdefault(name, (1024, 1024))
    job.extra = {"app": app, "model_path": model_path, "files": [name],
                 "invalid": fal_missing_input(b)}
    job.primary = {name}
    fake.add(job)
    ctx.job = job
    ctx.accepted = True
    out = {"request_id": job.id}
    out.update(fal_urls(ctx, app, job.id))
    out["queue_position"] = 0
    return Resp(200, out, delay=hang_delay(markers, ctx.attempt))


def fal_error_of(job):
    if job.markers.get("fail") == "canceled":
        return ("Request was cancelled.", "request_cancelled")
    if job.extra.get("invalid"):
        return ("Field required: prompt", "validation_error")
    if "blocked" in job.markers:
        return ("The content could not be processed because it contained material "
                "flagged by a content checker.", "content_policy_violation")
    if "fail" in job.markers:
        return ("Generation failed.", "generation_failed")
    return None


def fal_status(ctx, job):
    fake = ctx.fake
    frac, done = job.phase()
    out = {"request_id": job.id}
    out.update(fal_urls(ctx, job.extra["app"], job.id))
    logs = None
    if ctx.q.get("logs") in ("1", "true"):
        logs = [{"message": "Job queued", "level": "INFO", "source": "user",
                 "timestamp": iso(job.wall0)}]
        if frac >= 0.3:
            logs.append({"message": "Running: %d%%" % int(frac * 100), "level": "INFO",
                         "source": "user", "timestamp": iso(job.at(frac))})
    if not done:
        if frac < 0.3:
            out.update({"status": "IN_QUEUE", "queue_position": 1 if frac < 0.15 else 0})
        else:
            out.update({"status": "IN_PROGRESS", "queue_position": None, "logs": logs})
        return J(202, out)
    out.update({"status": "COMPLETED", "queue_position": None, "logs": logs,
                "metrics": {"inference_time": round((job.duration or 0) / 1000.0, 3)}})
    e = fal_error_of(job)
    if e:
        out["error"], out["error_type"] = e
    fake.final(job)
    return J(200, out)


def fal_result(ctx, job):
    r = fal_result_answer(ctx, job)
    # [resulthang:MS]: the first read of the result answers after MS.
    if ctx.fake.result_read(job) == 1 and "resulthang" in job.markers:
        r.delay = marker_int(job.markers, "resulthang", 30000) / 1000.0
    return r


def fal_result_answer(ctx, job):
    fake = ctx.fake
    _, done = job.phase()
    if not done:
        return fal_err(400, "Request is still in progress.")
    e = fal_error_of(job)
    if e:
        msg, typ = e
        loc = ["body", "prompt"] if typ == "validation_error" else ["body"]
        r = J(422, {"detail": [{"loc": loc, "msg": msg, "type": typ}]})
        r.headers["X-Fal-Error-Type"] = typ
        fake.final(job)
        return r
    g = fake.bump(job)
    name = job.extra["files"][0]
    url = ctx.file_url(job, name, g)
    kind = job.kind
    fake.final(job)
    if kind == "video":
        return J(200, {"video": {"url": url, "content_type": "video/mp4",
                                 "file_name": name, "file_size": len(fake.media.mp4)},
                       "seed": 42})
    if kind == "model_3d":
        return J(200, {"model_mesh": {"url": url, "content_type": "model/gltf-binary",
                                      "file_name": name}, "seed": 42})
    if kind == "audio":
        return J(200, {"audio": {"url": url, "content_type": "audio/mpeg",
                                 "file_name": name}})
    w, h = job.sizes[name]
    return J(200, {"images": [{"url": url, "content_type": "image/png", "width": w,
                               "height": h}],
                   "seed": 42, "has_nsfw_concepts": [False], "prompt": job.prompt,
                   "timings": {"inference": round((job.duration or 0) / 1000.0, 3)}})


# fal's Platform API (/falapi, for https://api.fal.ai): the requests of
# an endpoint, with their inputs when expand=payloads.  Listed by end
# time, newest first: a request still queued or running is not there.


def falapi_cursor(n):
    return base64.b64encode(str(n).encode()).decode()


def route_falapi(ctx, parts):
    fake = ctx.fake
    ctx.provider = "fal"
    ctx.event = "list"
    a = ctx.hdr("Authorization") or ""
    if parts != ["v1", "models", "requests", "by-endpoint"]:
        return fal_err(404, "Not Found")
    if ctx.method != "GET":
        return fal_err(405, "Method Not Allowed")
    if not a:
        return fal_err(401, "Missing authorization header.")
    if a[:4] != "Key " or a[4:].strip() != fake.key:
        return fal_err(401, "No user found for Key ID and Secret.")
    eps = [e for v in parse_qs(urlsplit(ctx.h.path).query).get("endpoint_id", [])
           for e in v.split(",") if e]
    if not eps:
        return fal_err(422, [{"loc": ["query", "endpoint_id"], "msg": "Field required",
                              "type": "missing"}])
    try:
        limit = int(ctx.q.get("limit") or 50)
        skip = int(base64.b64decode(ctx.q["cursor"]).decode()) if ctx.q.get("cursor") else 0
    except (ValueError, UnicodeDecodeError, binascii.Error):
        return fal_err(422, [{"loc": ["query"], "msg": "Invalid limit or cursor",
                              "type": "value_error"}])
    if limit < 1 or limit > 100 or skip < 0:
        return fal_err(422, [{"loc": ["query", "limit"], "msg": "Input should be between 1 and 100",
                              "type": "less_than_equal"}])

    def ms_of(name, default):
        v = ctx.q.get(name)
        if not v:
            return default
        try:
            d = datetime.fromisoformat(v.replace("Z", "+00:00"))
        except ValueError:
            return None
        if d.tzinfo is None:
            d = d.replace(tzinfo=timezone.utc)
        return int(d.timestamp() * 1000)
    now = int(time.time() * 1000)
    start = ms_of("start", now - 86400000)
    end = ms_of("end", now + 1)
    if start is None or end is None:
        return fal_err(422, [{"loc": ["query", "start"], "msg": "Input should be a valid datetime",
                              "type": "datetime_parsing"}])
    with fake.lock:
        jobs = [j for j in fake.jobs.values() if j.provider == "fal"
                and j.extra.get("model_path") in eps and j.phase()[1]]
    rows = []
    for j in jobs:
        ended = j.at(1.0)
        if start <= ended < end:
            rows.append((ended, j))
    rows.sort(key=lambda r: (r[0], r[1].seq), reverse=True)
    page = rows[skip:skip + limit]
    more = len(rows) > skip + limit
    items = []
    for ended, j in page:
        it = {"request_id": j.id, "endpoint_id": j.extra["model_path"],
              "sent_at": iso(j.wall0), "started_at": iso(j.at(0.3)),
              "ended_at": iso(ended), "status_code": 422 if fal_error_of(j) else 200,
              "duration": round((ended - j.wall0) / 1000.0, 3)}
        if ctx.q.get("expand") == "payloads":
            it["json_input"] = j.body
        items.append(it)
    return J(200, {"items": items, "has_more": more,
                   "next_cursor": falapi_cursor(skip + limit) if more else None})


# --------------------------------------------------------------------------
# Replicate predictions (/replicate): official models by name, any model
# by version, Prefer: wait (the create answers when the output is ready,
# up to N seconds), Cancel-After (a prediction running longer is
# canceled), polling and cancel.

REP_ERRS = {
    "500": lambda: J(500, {"title": "Internal Server Error", "detail": "Internal server error.",
                           "status": 500}),
    "503": lambda: J(503, {"title": "Service Unavailable", "detail": "Service unavailable.",
                           "status": 503}),
    "429": lambda: J(429, {"title": "Too Many Requests", "status": 429,
                           "detail": "Request was throttled. Your rate limit resets in ~30s."}),
    "credits": lambda: J(402, {"title": "Insufficient credit", "status": 402,
                               "detail": "You have insufficient credit to run this model."}),
}


def rep_err(status, title, detail):
    return J(status, {"title": title, "detail": detail, "status": status})


def rep_duration_ms(text):
    """A Go-style duration ("300s", "5m", "1h30m") in ms, or None."""
    m = re.fullmatch(r"((\d+)h)?((\d+)m)?((\d+)s)?", text or "")
    if not text or not m or not any(m.group(i) for i in (2, 4, 6)):
        return None
    return ((int(m.group(2) or 0) * 60 + int(m.group(4) or 0)) * 60 + int(m.group(6) or 0)) * 1000


def route_replicate(ctx, parts):
    fake = ctx.fake
    ctx.provider = "replicate"
    if len(parts) >= 2 and ctx.method == "POST" and parts[-1] == "predictions":
        ctx.event = "create"
        ctx.accepted = False
    elif len(parts) >= 3 and parts[:2] == ["v1", "predictions"]:
        ctx.event = "poll" if ctx.method == "GET" else "other"
    elif parts == ["v1", "predictions"] and ctx.method == "GET":
        ctx.event = "list"
    if ctx.bearer() != fake.key:
        return rep_err(401, "Unauthenticated", "You did not pass a valid authentication token")
    if parts == ["v1", "predictions"] and ctx.method == "GET":
        return rep_list(ctx)
    if len(parts) == 5 and parts[:2] == ["v1", "models"] and parts[4] == "predictions" \
            and ctx.method == "POST":
        return rep_create(ctx, parts[2] + "/" + parts[3], None)
    if parts == ["v1", "predictions"] and ctx.method == "POST":
        v = ctx.body.get("version") if isinstance(ctx.body, dict) else None
        if not isinstance(v, str) or not v:
            return rep_err(422, "Invalid version", "version is required")
        return rep_create(ctx, None, v.split(":")[-1])
    if len(parts) in (3, 4) and parts[:2] == ["v1", "predictions"]:
        job = fake.get(parts[2])
        if job is None or job.provider != "replicate":
            return rep_err(404, "Not found", "Prediction not found.")
        ctx.job = job
        if len(parts) == 3 and ctx.method == "GET":
            return J(200, rep_obj(ctx, job))
        if len(parts) == 4 and parts[3] == "cancel" and ctx.method == "POST":
            _, done = job.phase()
            if not done and not job.extra.get("canceled"):
                job.extra["canceled"] = True
                webhooks.canceled(sys.modules[__name__], fake, job)
            return J(200, rep_obj(ctx, job))
    return rep_err(404, "Not found", "The requested resource does not exist.")


def rep_create(ctx, model, version):
    fake = ctx.fake
    b = ctx.body
    if ctx.bad_json or not isinstance(b, dict) or not isinstance(b.get("input"), dict):
        return rep_err(422, "Input validation failed", "input is required")
    inp = b["input"]
    prompt = inp.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        return rep_err(422, "Input validation failed", "input.prompt is required")
    wait = None
    pref = ctx.hdr("Prefer")
    if pref:
        m = re.fullmatch(r"wait(=(\d+))?", pref.strip())
        if not m or (m.group(2) and not 1 <= int(m.group(2)) <= 60):
            return rep_err(400, "Invalid Prefer header", "Prefer must be wait or wait=N (1-60)")
        wait = int(m.group(2) or 60)
    ca = ctx.hdr("Cancel-After")
    cancel_ms = rep_duration_ms(ca) if ca else None
    if ca and cancel_ms is None:
        return rep_err(400, "Invalid Cancel-After header", "Cancel-After must be a duration")
    markers = parse_markers(body_prompt_texts(b), "replicate")
    r = create_faults(ctx, "replicate", prompt, markers, REP_ERRS)
    if r:
        return r
    name = model or version
    kind = "video" if "video" in name else "image"
    job = Job(fake, "replicate", kind, prompt, markers, b)
    fname = "output.mp4" if kind == "video" else "output.png"
    if kind == "image":
        job.sizes[fname] = ASPECTS.get(inp.get("aspect_ratio", "1:1"), (1024, 1024))
    job.extra = {"model": model or "owner/model", "version": version or rid(64, "0123456789abcdef"),
                 "files": [fname], "cancel_ms": cancel_ms}
    job.primary = {fname}
    fake.add(job)
    ctx.job = job
    ctx.accepted = True
    delay = hang_delay(markers, ctx.attempt)
    if wait and job.duration is not None and job.duration <= wait * 1000:
        # Held until the output is ready: the answer is the finished one.
        return Resp(201, rep_obj(ctx, job, done=True), delay=delay or job.duration / 1000.0)
    return Resp(201, rep_obj(ctx, job), delay=delay)


def rep_cursor(seq):
    return base64.urlsafe_b64encode(("s=%d" % seq).encode()).decode()


def rep_list(ctx):
    """GET /v1/predictions: the account's predictions, newest first, a
    page at a time ({previous, next, results}); next is the URL of the
    following page (its cursor query), or null on the last page."""
    fake = ctx.fake
    before = None
    cur = ctx.q.get("cursor")
    if cur is not None:
        try:
            t = base64.urlsafe_b64decode(cur.encode()).decode()
            if not t.startswith("s="):
                raise ValueError(t)
            before = int(t[2:])
        except (ValueError, UnicodeDecodeError, binascii.Error):
            return rep_err(400, "Invalid cursor", "The cursor is not valid.")
    with fake.lock:
        jobs = [j for j in fake.jobs.values() if j.provider == "replicate"
                and (before is None or j.seq < before)]
    jobs.sort(key=lambda j: j.seq, reverse=True)
    sel = jobs[:fake.rep_page]
    url = ctx.base() + "/replicate/v1/predictions"
    nxt = None
    if len(jobs) > len(sel):
        nxt = url + "?cursor=" + quote(rep_cursor(sel[-1].seq), safe="")
    prev = None
    if before is not None and sel:
        prev = url + "?cursor=" + quote(rep_cursor(sel[0].seq + fake.rep_page + 1), safe="")
    return J(200, {"previous": prev, "next": nxt,
                   "results": [rep_obj(ctx, j, peek=True) for j in sel]})


def rep_obj(ctx, job, done=False, peek=False):
    """A prediction object.  peek: as a list shows it, changing nothing
    (no new file URL generation, the job not counted as reported)."""
    fake = ctx.fake
    frac, fin = job.phase()
    fin = fin or done
    el = (time.monotonic() - job.t0) * 1000
    cm = job.extra.get("cancel_ms")
    base = ctx.base() + "/replicate/v1/predictions/" + job.id
    o = {"id": job.id, "model": job.extra["model"], "version": job.extra["version"],
         "input": job.body.get("input"), "logs": "", "output": None, "error": None,
         "data_removed": False, "created_at": iso(job.wall0),
         "urls": {"get": base, "cancel": base + "/cancel"}}
    if job.extra.get("canceled") or (cm is not None and not fin and el > cm) or \
            (cm is not None and job.duration is not None and job.duration > cm and el > cm):
        o["status"] = "canceled"
        if not peek:
            fake.final(job)
        return o
    if not fin:
        o["status"] = "starting" if frac < 0.3 else "processing"
        return o
    o["completed_at"] = iso(job.at(1.0))
    o["metrics"] = {"predict_time": round((job.duration or 0) / 1000.0, 3)}
    if job.failed():
        o["status"] = "failed"
        o["error"] = "NSFW content detected." if "blocked" in job.markers else \
            "Prediction failed: CUDA out of memory."
    else:
        g = job.gen if peek else fake.bump(job)
        o["status"] = "succeeded"
        url = ctx.file_url(job, job.extra["files"][0], g)
        o["output"] = url if job.kind == "video" else [url]
    if not peek:
        fake.final(job)
    return o


# --------------------------------------------------------------------------
# HTTP plumbing.

ROUTES = {"meshy": route_meshy, "gemini": route_gemini, "suno": route_suno,
          "elevenlabs": route_elevenlabs, "blockade": route_blockade, "fal": route_fal,
          "falapi": route_falapi,
          "replicate": route_replicate, "files": route_files}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "fake-provider/1"
    sys_version = ""
    timeout = 120

    def setup(self):
        super().setup()
        with self.server.fake.lock:
            self.server.fake.connections += 1

    def log_message(self, fmt, *args):
        pass

    def version_string(self):
        return self.server_version

    def read_body(self):
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            out = bytearray()
            while True:
                line = self.rfile.readline(65537)
                n = int(line.split(b";")[0].strip() or b"0", 16)
                if n == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(n)
                self.rfile.readline(65537)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def do_GET(self):
        self.dispatch("GET")

    def do_POST(self):
        self.dispatch("POST")

    def do_PUT(self):
        self.dispatch("PUT")

    def do_DELETE(self):
        self.dispatch("DELETE")

    def do_HEAD(self):
        self.dispatch("HEAD")

    def dispatch(self, method):
        fake = self.server.fake
        try:
            ctx = Ctx(self, method, fake)
        except (ValueError, OSError):
            self.close_connection = True
            return
        parts = [p for p in ctx.path.split("/") if p]
        if parts and parts[0] == "_fake":
            return self.control(ctx, parts[1:])
        with fake.lock:
            fake.requests += 1
        ctx.sync_job = None
        ctx.key_sent = None
        route = ROUTES.get(parts[0]) if parts else None
        if route is None:
            resp = J(404, {"error": "no such provider prefix"})
        else:
            try:
                resp = route(ctx, parts[1:])
            except Exception as e:  # a bug in the fake: answer 500, keep serving
                import traceback
                traceback.print_exc(file=sys.stderr)
                resp = J(500, {"error": "fake provider bug: %r" % (e,)})
        if ctx.accepted is None:
            ok = resp.status < 400
            if ok and ctx.provider == "suno" and resp.ctype == "application/json":
                try:
                    ok = json.loads(resp.body).get("code") == 200
                except (ValueError, AttributeError):
                    pass
            ctx.accepted = ok
        # Downloads under way at once: from here until the body is sent.
        dl = ctx.event == "download"
        at_once = 0
        if dl:
            with fake.lock:
                fake.downloads_now += 1
                at_once = fake.downloads_now
                fake.downloads_max = max(fake.downloads_max, at_once)
        if ctx.event == "poll":
            with fake.lock:
                fake.polls += 1
        if fake.log_polls or ctx.event != "poll":
            entry = {"ts": int(time.time() * 1000), "provider": ctx.provider,
                     "method": method, "path": ctx.path, "query": ctx.q,
                     "headers": {k.lower(): v for k, v in self.headers.items()},
                     "body": ctx.body, "status": resp.status, "event": ctx.event,
                     "job_id": ctx.job.id if ctx.job else None,
                     "tag": ctx.job.tag if ctx.job else None,
                     "accepted": bool(ctx.accepted)}
            if ctx.event == "download":
                entry["key_sent"] = bool(ctx.key_sent)
                entry["at_once"] = at_once
            if resp.delay and ctx.event == "create":
                entry["delay_ms"] = int(resp.delay * 1000)
            fake.log(entry)
        if ctx.event == "create" and ctx.accepted:
            webhooks.created(sys.modules[__name__], ctx)
        try:
            if resp.delay:
                time.sleep(resp.delay)
            self.send(resp, method == "HEAD")
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            self.close_connection = True
        finally:
            if dl:
                with fake.lock:
                    fake.downloads_now -= 1
            if ctx.sync_job is not None:
                fake.final(ctx.sync_job)

    def send(self, resp, head_only=False):
        body = bytes(resp.body)
        n = len(body)
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.ctype)
        if resp.truncate:
            self.send_header("Content-Length", str(n * 2 + 1024))
            self.send_header("Connection", "close")
            self.close_connection = True
            body = body[: max(1, n // 2)]
        else:
            self.send_header("Content-Length", str(n))
        for k, v in resp.headers.items():
            self.send_header(k, v)
        # Headers and body leave in one write.
        self._headers_buffer.append(b"\r\n")
        if not head_only:
            self._headers_buffer.append(body)
        data = b"".join(self._headers_buffer)
        self._headers_buffer = []
        self.wfile.write(data)

    def control(self, ctx, parts):
        fake = self.server.fake
        p = "/".join(parts)
        if p == "stats" and ctx.method == "GET":
            r = J(200, fake.stats())
        elif p == "reset" and ctx.method == "POST":
            fake.reset()
            r = J(200, {"reset": True})
        elif p == "jwks.json" and ctx.method == "GET":
            r = J(200, webhooks.jwks())
        elif p == "deliver" and ctx.method == "POST":
            r = J(*webhooks.control(sys.modules[__name__], fake, ctx))
        elif p == "finish" and ctx.method == "POST":
            b = ctx.body if isinstance(ctx.body, dict) else {}
            job = fake.get(b.get("job") or "")
            if job is None:
                r = J(404, {"error": "no such job"})
            else:
                job.duration = (time.monotonic() - job.t0) * 1000.0
                r = J(200, {"finished": True})
        elif p == "jobs" and ctx.method == "GET":
            with fake.lock:
                jobs = list(fake.jobs.values())
            out = []
            for j in jobs:
                frac, done = j.phase()
                out.append({"id": j.id, "provider": j.provider, "kind": j.kind,
                            "prompt": j.prompt, "tag": j.tag, "markers": j.markers,
                            "created_ms": j.wall0, "done": done,
                            "in_flight": j.in_flight, "gen": j.gen})
            r = J(200, out)
        else:
            r = J(404, {"error": "unknown control endpoint"})
        self.send(r)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 4096


def main():
    ap = argparse.ArgumentParser(description="Fake media-generation provider APIs.")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--log", default=None)
    ap.add_argument("--job-ms", type=int, default=300)
    ap.add_argument("--key", default="test-key-123")
    ap.add_argument("--no-log-polls", action="store_true")
    ap.add_argument("--replicate-page-size", type=int, default=100,
                    help="predictions per page of Replicate's list")
    a = ap.parse_args()
    media = Media()
    fake = Fake(a.key, a.job_ms, a.log, not a.no_log_polls, media,
                max(1, a.replicate_page_size))
    srv = Server(("127.0.0.1", a.port), Handler)
    srv.fake = fake
    fake.port = srv.server_address[1]

    def stop(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    sys.stdout.write("ready %d\n" % fake.port)
    sys.stdout.flush()
    try:
        srv.serve_forever(poll_interval=0.2)
    except (SystemExit, KeyboardInterrupt):
        pass
    finally:
        if fake.logf:
            with fake.log_lock:
                fake.logf.flush()
        srv.server_close()


if __name__ == "__main__":
    main()
