#!/usr/bin/env python3
"""A PDND Interoperabilita token endpoint for varco's tests, written from PDND's consumer
guide with PyJWT + cryptography (independent of varco's JOSE code). It checks every client
assertion the way PDND does and issues RS256 vouchers (`typ: at+jwt`) with its own key.

  pdnd_peer.py PORT CLIENTS_JSON
      CLIENTS_JSON: {"issuer": "...", "assertion_aud": "...", "expires_in": 600,
                     "clients": {CLIENT_ID: {"jwks_file": PATH,
                                             "purposes": {PURPOSE_ID: {"aud": ..., "eserviceId": ...}}},
                                 API_CLIENT_ID: {"jwks_file": PATH, "api": {"aud": "uat.interop.pagopa.it/m2m",
                                                 "organizationId": UUID}}}}
      An e-service client's assertions name a purposeId; an API interop client's (M2M) never do,
      and get a voucher without purpose for PDND's own services (Signal Hub).
  serves until killed; prints "ready".

  POST /token.oauth2          form: client_assertion, client_assertion_type, grant_type[, client_id]
  GET  /.well-known/jwks.json its voucher-signing key
  GET  /_control/stats        {"issued": N, "bound": N, "refused": [reasons]}
  POST /_control/set          JSON merged into the settings (e.g. {"expires_in": 2}); answers 204
"""
import base64
import json
import re
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

PORT = int(sys.argv[1])
CONF = json.load(open(sys.argv[2]))
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
KID = "pdnd-test-" + uuid.uuid4().hex[:8]
LOCK = threading.Lock()
STATS = {"issued": 0, "bound": 0, "refused": [], "assertions": []}
SEEN_JTI = set()
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def jwks():
    pub = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(KEY.public_key()))
    pub.update({"kid": KID, "use": "sig", "alg": "RS256"})
    return {"keys": [pub]}


class Refused(Exception):
    pass


def check(form):
    """The checks of PDND's token endpoint; returns (client_id, claims) or raises Refused."""
    if form.get("grant_type") != "client_credentials":
        raise Refused("grant_type must be client_credentials")
    if form.get("client_assertion_type") != ASSERTION_TYPE:
        raise Refused("client_assertion_type must be " + ASSERTION_TYPE)
    assertion = form.get("client_assertion", "")
    try:
        header = jwt.get_unverified_header(assertion)
        unverified = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError as e:
        raise Refused(f"malformed client assertion: {e}")
    if header.get("alg") != "RS256":
        raise Refused("the assertion must be RS256")
    if header.get("typ") not in ("JWT", None):
        raise Refused("typ must be JWT")
    client_id = unverified.get("iss")
    client = CONF["clients"].get(client_id)
    if client is None:
        raise Refused(f"unknown client {client_id}")
    if form.get("client_id") not in (None, client_id):
        raise Refused("client_id differs from the assertion's iss")
    keys = {k["kid"]: k for k in json.load(open(client["jwks_file"]))["keys"]}
    jwk = keys.get(header.get("kid"))
    if jwk is None:
        raise Refused(f"the key {header.get('kid')} is not registered on the client")
    public = jwt.algorithms.RSAAlgorithm.from_jwk(json.dumps(jwk))
    try:
        claims = jwt.decode(
            assertion, public, algorithms=["RS256"], audience=CONF["assertion_aud"],
            options={"require": ["iss", "sub", "aud", "jti", "iat", "exp"]},
        )
    except jwt.PyJWTError as e:
        raise Refused(f"client assertion validation failure: {e}")
    if claims["sub"] != client_id:
        raise Refused("sub must equal iss (the client id)")
    if "nbf" in claims:
        raise Refused("nbf is not allowed in a client assertion")
    if claims["iat"] > time.time() + 5:
        raise Refused("iat is in the future")
    purpose = claims.get("purposeId")
    if "api" in client:
        if purpose is not None:
            raise Refused("an API interop client's assertion carries no purposeId")
    elif purpose not in client.get("purposes", {}):
        raise Refused(f"purpose {purpose} is not the client's")
    digest = claims.get("digest")
    if digest is not None:
        if digest.get("alg") != "SHA256" or not re.fullmatch(r"[0-9a-f]{64}", str(digest.get("value", ""))):
            raise Refused("digest must be {alg: SHA256, value: 64 lowercase hex}")
    with LOCK:
        if claims["jti"] in SEEN_JTI:
            raise Refused("the assertion's jti was already used")
        SEEN_JTI.add(claims["jti"])
    return client_id, claims


def voucher(client_id, claims):
    now = int(time.time())
    client = CONF["clients"][client_id]
    if "api" in client:
        body = {
            "iss": CONF["issuer"], "aud": client["api"]["aud"], "sub": client_id, "client_id": client_id,
            "organizationId": client["api"]["organizationId"], "jti": str(uuid.uuid4()),
            "iat": now, "nbf": now, "exp": now + int(CONF.get("expires_in", 600)),
        }
        return jwt.encode(body, KEY, algorithm="RS256", headers={"kid": KID, "typ": "at+jwt"})
    purpose = client["purposes"][claims["purposeId"]]
    body = {
        "iss": CONF["issuer"], "aud": purpose["aud"], "sub": client_id, "client_id": client_id,
        "purposeId": claims["purposeId"], "eserviceId": purpose.get("eserviceId", "eservice"),
        "consumerId": "consumer-" + client_id, "jti": str(uuid.uuid4()),
        "iat": now, "nbf": now, "exp": now + int(CONF.get("expires_in", 600)),
    }
    if "digest" in claims:
        body["digest"] = claims["digest"]
    return jwt.encode(body, KEY, algorithm="RS256", headers={"kid": KID, "typ": "at+jwt"})


class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def answer(self, status, body, ctype="application/json"):
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        if body is not None:
            self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/.well-known/jwks.json":
            return self.answer(200, jwks())
        if self.path == "/_control/stats":
            with LOCK:
                return self.answer(200, STATS)
        self.answer(404, {"title": "not found"})

    def do_POST(self):
        n = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(n).decode()
        if self.path == "/_control/set":
            with LOCK:
                CONF.update(json.loads(raw))
            return self.answer(204, None)
        if self.path != "/token.oauth2":
            return self.answer(404, {"title": "not found"})
        if not (self.headers.get("content-type") or "").startswith("application/x-www-form-urlencoded"):
            return self.answer(415, {"title": "form expected"})
        form = {k: v[0] for k, v in urllib.parse.parse_qs(raw, keep_blank_values=True).items()}
        delay = float(CONF.get("delay", 0))
        if delay:
            time.sleep(delay)
        try:
            client_id, claims = check(form)
        except Refused as e:
            with LOCK:
                STATS["refused"].append(str(e))
            return self.answer(400, {
                "type": "about:blank", "status": 400, "title": "The request is invalid",
                "detail": "Client assertion validation failure",
                "errors": [{"code": "015-0008", "detail": str(e)}],
            }, "application/problem+json")
        token = voucher(client_id, claims)
        with LOCK:
            STATS["issued"] += 1
            STATS["bound"] += 1 if "digest" in claims else 0
            STATS["assertions"].append({"client": client_id, "purposeId": claims.get("purposeId"), "digest": claims.get("digest")})
        self.answer(200, {"access_token": token, "token_type": "Bearer", "expires_in": int(CONF.get("expires_in", 600))})


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", PORT), H)
    print("ready", flush=True)
    server.serve_forever()
