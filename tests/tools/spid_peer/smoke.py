#!/usr/bin/env python3
"""Smoke test for peer.py (run with the python of a venv holding requirements.txt).

Starts the peer with one generated RP, then checks over HTTP:
 a) TA entity configuration   b) OP entity configuration
 c) TA fetch endpoint about the OP and the RP   d) OP authorization endpoint
 e) a full SPID code flow as that RP (the RP's entity configuration is served
    here, since the OP fetches it from the RP's entity id during authorization).
Prints PASS/FAIL per check; exits 1 on any failure; always kills the peer.
SMOKE_VERBOSE=1 also prints the tail of the peer's stderr.
"""
import base64
import hashlib
import json
import os
import queue
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urljoin, urlparse

import requests
from cryptojwt.jwe.jwe import factory as jwe_factory
from cryptojwt.jwk.jwk import key_from_jwk_dict
from cryptojwt.jwk.rsa import new_rsa_key
from cryptojwt.jws.jws import JWS

HERE = os.path.dirname(os.path.abspath(__file__))
ES_TYPE = "application/entity-statement+jwt"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rsa(use):
    k = new_rsa_key(use=use)
    k.add_kid()
    return k


def sign(payload, key, **head):
    return JWS(json.dumps(payload), alg="RS256", **head).sign_compact([key])


def verify(jwt, jwks):
    """Verify a JWS against a {"keys": [...]} set; returns the payload."""
    keys = [key_from_jwk_dict(k) for k in jwks["keys"]]
    return JWS(alg="RS256").verify_compact(jwt, keys)


def head(jwt):
    return json.loads(base64.urlsafe_b64decode(jwt.split(".")[0] + "=="))


def get_es(url):
    r = requests.get(url, timeout=20)
    assert r.status_code == 200, f"{url}: HTTP {r.status_code}"
    assert r.headers["Content-Type"].startswith(ES_TYPE), r.headers["Content-Type"]
    assert head(r.text).get("typ") == "entity-statement+jwt", head(r.text)
    return r.text


class RP:
    """A minimal relying party: keys, its entity configuration and the flow."""

    def __init__(self, port):
        self.id = f"http://127.0.0.1:{port}/c_e783"
        self.redirect_uri = f"{self.id}/callback"
        self.fed, self.sig, self.enc = rsa("sig"), rsa("sig"), rsa("enc")
        self.public_jwks = {"keys": [self.fed.serialize()]}

    def entity_configuration(self, ta):
        now = int(time.time())
        return sign({
            "iss": self.id, "sub": self.id, "iat": now, "exp": now + 3600,
            "jwks": self.public_jwks, "authority_hints": [ta],
            "metadata": {
                "federation_entity": {"organization_name": "smoke RP"},
                "openid_relying_party": {
                    "client_id": self.id, "client_name": "smoke RP",
                    "organization_name": "smoke RP", "application_type": "web",
                    "client_registration_types": ["automatic"],
                    "redirect_uris": [self.redirect_uri],
                    "response_types": ["code"],
                    "grant_types": ["authorization_code", "refresh_token"],
                    "token_endpoint_auth_method": "private_key_jwt",
                    "id_token_signed_response_alg": "RS256",
                    "userinfo_signed_response_alg": "RS256",
                    "userinfo_encrypted_response_alg": "RSA-OAEP",
                    "userinfo_encrypted_response_enc": "A256CBC-HS512",
                    # inline core keys (sig + enc), each with "use"
                    "jwks": {"keys": [self.sig.serialize(), self.enc.serialize()]},
                },
            },
        }, self.fed, typ="entity-statement+jwt")

    def serve(self, port, ta):
        rp = self

        class H(BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path != "/c_e783/.well-known/openid-federation":
                    self.send_error(404)
                    return
                body = rp.entity_configuration(ta).encode()
                self.send_response(200)
                self.send_header("Content-Type", ES_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        srv = ThreadingHTTPServer(("127.0.0.1", port), H)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        return srv


def code_flow(rp, ready, op_core_jwks):
    authz, token_ep = ready["authorization_endpoint"], ready["token_endpoint"]
    user = ready["user"]
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(
        hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    now = int(time.time())
    state, nonce = secrets.token_hex(20), secrets.token_hex(20)  # >= 32 chars
    fisc = "https://attributes.eid.gov.it/fiscal_number"
    ro = sign({
        "iss": rp.id, "client_id": rp.id, "aud": [ready["op"], authz],
        "iat": now, "exp": now + 60, "jti": secrets.token_hex(8),
        "response_type": "code", "scope": ["openid"], "redirect_uri": rp.redirect_uri,
        "state": state, "nonce": nonce, "prompt": "consent login",
        "code_challenge": challenge, "code_challenge_method": "S256",
        "acr_values": ["https://www.spid.gov.it/SpidL2"],
        "claims": {"userinfo": {fisc: None, "given_name": None, "family_name": None,
                                "email": None}},
    }, rp.sig)
    s = requests.Session()
    csrf = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')

    # 1. login page (the OP builds the RP's trust chain here)
    r = s.get(authz, params={"client_id": rp.id, "response_type": "code",
                             "scope": "openid", "request": ro}, allow_redirects=False)
    assert r.status_code == 200, f"authz GET {r.status_code} {r.headers.get('Location')}"
    # 2. credentials -> consent page
    r = s.post(authz, allow_redirects=False, data={
        "username": user["username"], "password": user["password"],
        "authz_request_object": ro, "csrfmiddlewaretoken": csrf.search(r.text)[1]})
    assert r.status_code == 302, f"login POST {r.status_code}"
    consent = urljoin(authz, r.headers["Location"])
    r = s.get(consent)
    assert r.status_code == 200, f"consent GET {r.status_code}"
    # 3. consent -> redirect to the RP with code
    r = s.post(consent, allow_redirects=False,
               data={"agree": "True", "csrfmiddlewaretoken": csrf.search(r.text)[1]})
    loc = r.headers.get("Location", "")
    assert r.status_code == 302 and loc.startswith(rp.redirect_uri), f"consent POST {loc}"
    q = {k: v[0] for k, v in parse_qs(urlparse(loc).query).items()}
    assert q["state"] == state and q["iss"] == ready["op"], q
    # 4. token endpoint, private_key_jwt (aud must contain the token endpoint)
    assertion = sign({"iss": rp.id, "sub": rp.id, "aud": [token_ep], "iat": now,
                      "exp": now + 60, "jti": secrets.token_hex(8)}, rp.sig)
    r = requests.post(token_ep, data={
        "grant_type": "authorization_code", "code": q["code"], "code_verifier": verifier,
        "client_id": rp.id, "client_assertion": assertion,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"})
    assert r.status_code == 200, f"token {r.status_code} {r.text[:200]}"
    tok = r.json()
    idt = verify(tok["id_token"], op_core_jwks)
    assert idt["nonce"] == nonce and idt["aud"] == [rp.id] and idt["iss"] == ready["op"], idt
    # 5. userinfo: JWE (RSA-OAEP/A256CBC-HS512) around a JWS signed by the OP
    r = requests.get(ready["userinfo_endpoint"],
                     headers={"Authorization": f"Bearer {tok['access_token']}"})
    assert r.status_code == 200, f"userinfo {r.status_code}"
    jwe = jwe_factory(r.text)
    assert (jwe.jwt.headers["alg"], jwe.jwt.headers["enc"]) == ("RSA-OAEP", "A256CBC-HS512")
    claims = verify(jwe.decrypt(r.text, keys=[rp.enc]).decode(), op_core_jwks)
    assert claims[fisc] == user["fiscal_number"], claims
    assert claims["given_name"] == user["given_name"], claims


def main():
    t0 = time.time()
    port, rp_port = free_port(), free_port()
    rp = RP(rp_port)
    tmp = tempfile.TemporaryDirectory(prefix="spid_peer_smoke_")
    jwks_file = os.path.join(tmp.name, "rp_jwks.json")
    with open(jwks_file, "w") as f:
        json.dump(rp.public_jwks, f)
    log = open(os.path.join(tmp.name, "peer.log"), "w+")
    peer = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "peer.py"), "--port", str(port),
         "--workdir", os.path.join(tmp.name, "work"), "--rp", f"{rp.id}={jwks_file}"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True)
    failed = []

    def check(name, fn):
        try:
            fn()
            print(f"PASS {name}", flush=True)
        except Exception as e:
            failed.append(name)
            print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
            traceback.print_exc(limit=2)

    try:
        lines = queue.Queue()
        threading.Thread(target=lambda: [lines.put(x) for x in peer.stdout], daemon=True).start()
        line = lines.get(timeout=60)
        assert line.startswith("ready "), line
        ready = json.loads(line[len("ready "):])
        print(f"ready after {time.time() - t0:.1f}s: ta={ready['ta']} op={ready['op']}")
        ta, op, ta_jwks = ready["ta"], ready["op"], ready["ta_jwks"]
        st = {}

        def a():
            p = verify(get_es(f"{ta}.well-known/openid-federation"), ta_jwks)
            assert p["iss"] == p["sub"] == ta, p
            st["fetch"] = p["metadata"]["federation_entity"]["federation_fetch_endpoint"]

        def b():
            jwt = get_es(f"{op}/.well-known/openid-federation")
            p = verify(jwt, json.loads(base64.urlsafe_b64decode(jwt.split(".")[1] + "=="))["jwks"])
            assert p["iss"] == p["sub"] == op and "openid_provider" in p["metadata"], p
            assert p["authority_hints"] == [ta], p["authority_hints"]
            st["op_ec"] = p

        def c():
            p = verify(get_es(f"{st['fetch']}?sub={op}"), ta_jwks)
            assert p["iss"] == ta and p["sub"] == op, p
            assert p["jwks"] == st["op_ec"]["jwks"], "OP jwks differ"
            p = verify(get_es(f"{st['fetch']}?sub={rp.id}"), ta_jwks)
            assert p["iss"] == ta and p["sub"] == rp.id, p
            assert p["jwks"] == rp.public_jwks, (p["jwks"], rp.public_jwks)

        def d():
            r = requests.get(ready["authorization_endpoint"], timeout=10)
            assert r.status_code == 400, f"HTTP {r.status_code} (want 400: no request object)"

        def e():
            rp.serve(rp_port, ta)
            code_flow(rp, ready, st["op_ec"]["metadata"]["openid_provider"]["jwks"])

        for name, fn in (("a TA entity configuration", a), ("b OP entity configuration", b),
                         ("c TA fetch OP + RP", c), ("d OP authorization endpoint", d),
                         ("e full code flow", e)):
            check(name, fn)
    except Exception as e:
        failed.append("startup")
        print(f"FAIL startup: {type(e).__name__}: {e}")
    finally:
        peer.terminate()
        try:
            peer.wait(10)
        except subprocess.TimeoutExpired:
            peer.kill()
            peer.wait()
        if failed or os.environ.get("SMOKE_VERBOSE"):
            log.seek(0)
            print("--- peer stderr (tail) ---\n" + "".join(log.readlines()[-40:]))
        log.close()
        tmp.cleanup()
    print(f"{'FAIL' if failed else 'PASS'} overall in {time.time() - t0:.1f}s")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
