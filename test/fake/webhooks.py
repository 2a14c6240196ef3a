"""Webhooks of the fake provider: real-shaped, really signed deliveries.

A create that asks for a webhook (fal: ``?fal_webhook=URL``; Replicate:
``webhook`` in the body) gets one delivery when its job finishes, signed as the provider signs it:

* fal: ED25519 over ``request_id\\nuser_id\\ntimestamp\\nsha256hex(body)``,
  hex in ``X-Fal-Webhook-Signature``; the public key is served as a JWKS at
  ``GET /_fake/jwks.json``.
* Replicate, Standard Webhooks (as Veo's below, the same secret): a
  create with ``webhook`` gets the prediction object as its body, a
  ``start`` delivery at once when ``webhook_events_filter`` asks for it
  and a ``completed`` one when the prediction succeeds, fails or is
  canceled (by its cancel endpoint too); ``webhook-id`` is ``msg_...``.
* Veo (the Gemini API), Standard Webhooks: ``webhook-id``,
  ``webhook-timestamp``, ``webhook-signature: v1,<base64
  HMAC-SHA256(id.timestamp.body)>`` with the secret ``SECRET`` (``whsec_``
  + base64); the project-level webhook's URL is the ``url`` of
  ``/_fake/deliver``, and the body the thin ``video.generated`` event.
* Suno: sunoapi.org's callback body; kie.ai's ``X-Webhook-Timestamp`` and
  ``X-Webhook-Signature: base64(HMAC-SHA256(task_id.timestamp))`` under
  ``HMAC_KEY``.
* Meshy: the task object, unsigned.

A prompt with ``[nohook]`` gets no delivery.  ``POST /_fake/deliver``
``{"job": ID, "mode": M, "url"?: URL}`` sends one now and answers
``{"status": <the receiver's HTTP status>}``; modes: ``ok``, ``again``
(the last delivery of the job, byte for byte: a replay), ``bad_signature``,
``stale`` (timestamp 10 minutes old), ``oversize`` (a 2 MiB body),
``progress`` (Suno's ``text`` callback, Meshy's task ``IN_PROGRESS``).  Each
delivery is logged as an event ``webhook`` with the receiver's status.
"""

import base64
import hashlib
import hmac
import http.client
import json
import threading
import time
import uuid
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives import serialization

SECRET = "whsec_" + base64.b64encode(b"fake-webhook-secret-0123456789ab").decode()
HMAC_KEY = "fake-hmac-key-0123456789"
USER_ID = "fake-user-1"

_key = Ed25519PrivateKey.generate()
_pub = _key.public_key().public_bytes(serialization.Encoding.Raw,
                                      serialization.PublicFormat.Raw)
_last = {}
_lock = threading.Lock()


def jwks():
    x = base64.urlsafe_b64encode(_pub).decode().rstrip("=")
    return {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "fake-1",
                      "use": "sig", "alg": "EdDSA"}]}


def fal_headers(request_id, body, ts=None):
    ts = str(int(time.time()) if ts is None else ts)
    msg = "\n".join([request_id, USER_ID, ts, hashlib.sha256(body).hexdigest()])
    sig = _key.sign(msg.encode()).hex()
    return {"X-Fal-Webhook-Request-Id": request_id, "X-Fal-Webhook-User-Id": USER_ID,
            "X-Fal-Webhook-Timestamp": ts, "X-Fal-Webhook-Signature": sig}


def standard(body, ts=None, wid=None, secret=SECRET):
    ts = str(int(time.time()) if ts is None else ts)
    wid = wid or "msg_" + uuid.uuid4().hex
    key = base64.b64decode(secret[6:])
    mac = hmac.new(key, ("%s.%s." % (wid, ts)).encode() + body, hashlib.sha256).digest()
    return {"webhook-id": wid, "webhook-timestamp": ts,
            "webhook-signature": "v1," + base64.b64encode(mac).decode()}


def post(url, body, headers):
    u = urlsplit(url)
    c = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=15)
    try:
        path = u.path + ("?" + u.query if u.query else "")
        h = {"Content-Type": "application/json", "User-Agent": "fake-provider/1"}
        h.update(headers)
        c.request("POST", path, body=body, headers=h)
        r = c.getresponse()
        r.read()
        return r.status
    except OSError:
        return 0
    finally:
        c.close()


def _fal_body(mod, fake, job, host):
    c = mod.Ctx.__new__(mod.Ctx)
    c.fake = fake
    c.host = host
    resp = mod.fal_result(c, job)
    payload = json.loads(bytes(resp.body))
    ok = resp.status == 200
    return json.dumps({"request_id": job.id, "gateway_request_id": job.id,
                       "status": "OK" if ok else "ERROR", "payload": payload,
                       "error": None if ok else "Unprocessable Entity"},
                      separators=(",", ":")).encode()


def _ctx(mod, fake, host):
    c = mod.Ctx.__new__(mod.Ctx)
    c.fake = fake
    c.host = host
    return c


def _replicate_body(mod, fake, job, host):
    # The prediction object, as GET /v1/predictions/{id} would answer now.
    o = mod.rep_obj(_ctx(mod, fake, host), job)
    return json.dumps(o, separators=(",", ":")).encode()


def _veo_body(job):
    # The Gemini API's video.generated event is thin: where the result is.
    name = "models/%s/operations/%s" % (job.extra["model"], job.id)
    return json.dumps({"type": "video.generated", "data": {
        "operation": name, "video_uri": "files/" + job.id}},
        separators=(",", ":")).encode()


def hmac_headers(task_id, ts=None, key=HMAC_KEY):
    ts = str(int(time.time()) if ts is None else ts)
    mac = hmac.new(key.encode(), ("%s.%s" % (task_id, ts)).encode(), hashlib.sha256)
    return {"X-Webhook-Timestamp": ts,
            "X-Webhook-Signature": base64.b64encode(mac.digest()).decode()}


def build(mod, fake, job, mode="ok"):
    """(body, headers) of a delivery of job, signed as its provider signs."""
    if mode == "again":
        with _lock:
            return _last.get(job.id, (None, None))
    ts = int(time.time()) - (600 if mode == "stale" else 0)
    if job.provider == "veo":
        body = _veo_body(job)
    elif job.provider == "suno":
        # sunoapi.org's callback; kie.ai signs the task id, not the body.
        if mode == "progress":
            body = json.dumps({"code": 200, "msg": "Text generation completed.",
                               "data": {"callbackType": "text", "task_id": job.id,
                                        "data": []}}, separators=(",", ":")).encode()
        else:
            body = json.dumps({"code": 200, "msg": "All generated successfully.",
                               "data": {"callbackType": "complete", "task_id": job.id,
                                        "data": []}}, separators=(",", ":")).encode()
    elif job.provider == "meshy":
        body = json.dumps({"id": job.id, "status": "IN_PROGRESS", "progress": 40}
                          if mode == "progress" else {"id": job.id, "status": "SUCCEEDED",
                                                      "progress": 100},
                          separators=(",", ":")).encode()
    elif job.provider == "replicate":
        body = _replicate_body(mod, fake, job, job.extra["webhook_host"])
    else:
        body = _fal_body(mod, fake, job, job.extra["webhook_host"])
    if mode == "oversize":
        body = body[:-1] + b',"pad":"' + b"x" * (2 << 20) + b'"}'
    if job.provider in ("veo", "replicate"):
        headers = standard(body, ts)
    elif job.provider == "suno":
        headers = hmac_headers(job.id, ts)
    elif job.provider == "meshy":
        headers = {}
    else:
        headers = fal_headers(job.id, body, ts)
    if mode == "bad_signature" and job.provider == "suno":
        headers = hmac_headers(job.id, ts, "another key")
    elif mode == "bad_signature":
        body = body.replace(b'"OK"', b'"ERROR"') if b'"OK"' in body else body + b" "
    return body, headers


def deliver(mod, fake, job, mode="ok", url=None):
    body, headers = build(mod, fake, job, mode)
    if body is None:
        return 0
    if mode == "ok":
        with _lock:
            _last[job.id] = (body, headers)
    t = int(time.time() * 1000)
    url = url or job.extra.get("webhook")
    st = post(url, body, headers)
    fake.log({"ts": t, "provider": job.provider, "method": "POST",
              "path": urlsplit(url).path, "query": {},
              "headers": {}, "body": None, "status": st, "event": "webhook",
              "job_id": job.id, "tag": job.tag, "accepted": 200 <= st < 300,
              "mode": mode})
    return st


def _later(s, *args):
    timer = threading.Timer(s, deliver, args)
    timer.daemon = True
    timer.start()


# Replicate's events when the create names none.
REPLICATE_EVENTS = ("start", "output", "logs", "completed")


def created(mod, ctx):
    """A create was accepted: schedule its delivery if it asked for one."""
    job = ctx.job
    if job is None or ctx.provider not in ("fal", "replicate"):
        return
    if ctx.provider == "fal":
        url = ctx.q.get("fal_webhook")
        events = ("completed",)
    else:
        b = ctx.body if isinstance(ctx.body, dict) else {}
        url = b.get("webhook")
        events = b.get("webhook_events_filter") or REPLICATE_EVENTS
    if not url:
        return
    job.extra["webhook"] = url
    job.extra["webhook_host"] = ctx.host
    job.extra["webhook_events"] = list(events)
    if "nohook" in job.markers:
        return
    if ctx.provider == "replicate" and "start" in events:
        _later(0.05, mod, ctx.fake, job)
    if job.duration is not None and "completed" in events:
        _later(job.duration / 1000.0, mod, ctx.fake, job)


def canceled(mod, fake, job):
    """Replicate: a canceled prediction sends its completed event."""
    if job.extra.get("webhook") and "nohook" not in job.markers and \
            "completed" in job.extra.get("webhook_events", ()):
        _later(0.05, mod, fake, job)


def control(mod, fake, ctx):
    """POST /_fake/deliver."""
    b = ctx.body if isinstance(ctx.body, dict) else {}
    job = fake.get(b.get("job") or "")
    if job is None or ("webhook" not in job.extra and not b.get("url")):
        return 404, {"error": "no such job, or it asked for no webhook"}
    return 200, {"status": deliver(mod, fake, job, b.get("mode") or "ok", b.get("url"))}
