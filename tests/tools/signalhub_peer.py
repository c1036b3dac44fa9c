#!/usr/bin/env python3
"""PDND Signal Hub (collection and distribution) for varco's tests, written from Signal Hub's
OpenAPI (contracts/external/signalhub) and guide, with PyJWT (independent of varco's code):

  POST /1.0/push/signals                 deposit: the API interop voucher (RS256, PDND's key,
                                         `aud` = M2M audience, no purpose) of the e-service's
                                         producer; the body against SignalPayload; a signalId
                                         already stored → 400 `0002`, one below the highest
                                         stored → 400 `0005`; the e-service not the caller's → 403
  GET  /1.0/pull/signals/{eserviceId}?signalId=&size=
                                         distribution: a consumer's voucher; signals with a
                                         signalId strictly greater, ascending, `size` 1–100
                                         (default 10); 206 when more are stored, else 200;
                                         `lastSignalId` null on an empty page

  signalhub_peer.py PORT PUSH_SPEC PULL_SPEC PDND_JWKS_URL AUDIENCE CONF_JSON
      CONF_JSON: {"producers": {ESERVICE_ID: CLIENT_ID}, "consumers": {ESERVICE_ID: [CLIENT_ID]}}
  GET  /_control/stats     {"deposited": [signals], "pulls": N, "refused": [reasons]}
  POST /_control/signals   JSON list of signals stored as another producer deposited them
  POST /_control/set       {"down": true} answers 503 to everything else
"""
import json
import sys
import threading
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jsonschema
import jwt
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

PORT, PUSH_SPEC, PULL_SPEC, PDND_JWKS, AUDIENCE, CONF = sys.argv[1:7]
CONF = json.load(open(CONF))
PUSH = yaml.safe_load(open(PUSH_SPEC))
REGISTRY = Registry().with_resource("urn:push", Resource.from_contents(PUSH, default_specification=DRAFT4))
PAYLOAD = jsonschema.Draft4Validator({"$ref": "urn:push#/components/schemas/SignalPayload"}, registry=REGISTRY)
LOCK = threading.Lock()
STORE = {}  # eserviceId -> list of signals, ascending
STATS = {"deposited": [], "pulls": 0, "refused": []}
MODES = {"down": False}


class Refused(Exception):
    def __init__(self, status, code, detail):
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


def caller(headers):
    auth = headers.get("authorization") or ""
    if not auth.startswith("Bearer "):
        raise Refused(401, "9994", "the authorization header is not `Bearer <token>`")
    token = auth[7:]
    try:
        header = jwt.get_unverified_header(token)
        with urllib.request.urlopen(PDND_JWKS, timeout=5) as r:
            keys = {k["kid"]: k for k in json.load(r)["keys"]}
        key = jwt.algorithms.RSAAlgorithm.from_jwk(json.dumps(keys[header["kid"]]))
        claims = jwt.decode(token, key, algorithms=["RS256"], audience=AUDIENCE,
                            options={"require": ["exp", "iat", "nbf", "jti", "client_id"]})
    except (jwt.PyJWTError, KeyError) as e:
        raise Refused(401, "9001", f"invalid voucher: {e}")
    if header.get("typ") != "at+jwt":
        raise Refused(401, "9001", "invalid voucher: typ must be at+jwt")
    if "purposeId" in claims:
        raise Refused(401, "9001", "Signal Hub takes API interop vouchers, without a purpose")
    return claims["client_id"]


class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def send(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json" if status < 400 else "application/problem+json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def problem(self, e):
        with LOCK:
            STATS["refused"].append(f"{e.code} {e.detail}")
        self.send(e.status, {"type": "about:blank", "status": e.status, "title": "Refused", "detail": e.detail,
                             "errors": [{"code": e.code, "detail": e.detail}]})

    def do_GET(self):
        path, _, query = self.path.partition("?")
        if path == "/_control/stats":
            with LOCK:
                return self.send(200, STATS)
        if MODES["down"]:
            return self.send(503, {"title": "down"})
        prefix = "/1.0/pull/signals/"
        if not path.startswith(prefix):
            return self.send(404, {"title": "not found"})
        eservice = path[len(prefix):]
        try:
            client = caller({k.lower(): v for k, v in self.headers.items()})
            if client not in CONF["consumers"].get(eservice, []):
                raise Refused(403, "0004", "no active agreement and purpose for this e-service")
            q = urllib.parse.parse_qs(query)
            after = int(q.get("signalId", ["0"])[0])
            size = int(q.get("size", ["10"])[0])
            if after < 0 or not 1 <= size <= 100:
                raise Refused(400, "validationError", "signalId >= 0, size 1..100")
        except ValueError as e:
            return self.problem(Refused(400, "validationError", str(e)))
        except Refused as e:
            return self.problem(e)
        with LOCK:
            STATS["pulls"] += 1
            newer = [s for s in STORE.get(eservice, []) if s["signalId"] > after]
        page = newer[:size]
        body = {"signals": page, "lastSignalId": page[-1]["signalId"] if page else None}
        self.send(206 if len(newer) > len(page) else 200, body)

    def do_POST(self):
        n = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(n)
        if self.path == "/_control/set":
            with LOCK:
                MODES.update(json.loads(raw))
            return self.send(200, MODES)
        if self.path == "/_control/signals":
            with LOCK:
                for s in json.loads(raw):
                    STORE.setdefault(s["eserviceId"], []).append(s)
                    STORE[s["eserviceId"]].sort(key=lambda x: x["signalId"])
            return self.send(200, {"stored": True})
        if MODES["down"]:
            return self.send(503, {"title": "down"})
        if self.path != "/1.0/push/signals":
            return self.send(404, {"title": "not found"})
        try:
            client = caller({k.lower(): v for k, v in self.headers.items()})
            try:
                signal = json.loads(raw)
            except ValueError as e:
                raise Refused(400, "validationError", str(e))
            errors = [e.message for e in PAYLOAD.iter_errors(signal)]
            if errors:
                raise Refused(400, "validationError", "; ".join(errors))
            if not isinstance(signal["signalId"], int) or signal["signalId"] < 1:
                raise Refused(400, "validationError", "signalId must be a positive integer")
            if CONF["producers"].get(signal["eserviceId"]) != client:
                raise Refused(403, "0004", "the caller is not the e-service's producer")
            with LOCK:
                stored = STORE.setdefault(signal["eserviceId"], [])
                if any(s["signalId"] == signal["signalId"] for s in stored):
                    raise Refused(400, "0002", "signalId already stored")
                if stored and signal["signalId"] < stored[-1]["signalId"]:
                    raise Refused(400, "0005", "a higher signalId is already stored")
                stored.append(signal)
                STATS["deposited"].append(signal)
        except Refused as e:
            return self.problem(e)
        self.send(200, {"signalId": signal["signalId"]})


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(PORT)), H)
    print("ready", flush=True)
    server.serve_forever()
