#!/usr/bin/env python3
"""An ANPR e-service (C001 or C021, `POST /anpr-service-e002`) for varco's tests, checking
what ANPR's PDND gateway checks, with PyJWT + cryptography (independent of varco's code):

  - the PDND voucher (RS256, `typ: at+jwt`, PDND's key from its JWKS, `aud` = this e-service,
    `exp`/`nbf`, the expected purposeId);
  - INTEGRITY_REST_02: `Digest` (SHA-256, base64) of the exact body, `Agid-JWT-Signature` by
    the consumer's key (`kid`), `aud`, `signed_headers` covering digest and content-type,
    single-use `jti`;
  - AUDIT_REST_02 (unless --no-audit): `Agid-JWT-TrackingEvidence` by the consumer's key with
    userID, userLocation, LoA, purposeId, and the voucher's `digest` = SHA-256 (hex) of it;
  - the body against RichiestaE002 of ANPR's own OpenAPI (contracts/external/anpr), and a
    unique `idOperazioneClient`, for C001 numeric and greater than that of every request
    answered before this one arrived (what "increasing" can mean for concurrent calls).

Answers are RispostaE002OK / RispostaKO from a small registry, signed (INTEGRITY_REST_02 on
the response, `aud` = the consumer's client id) with the peer's own key.

  anpr_peer.py PORT SPEC AUDIENCE PURPOSE PDND_JWKS_URL CONSUMER_JWKS_FILE [--no-audit] [--key PEM KID]
      --key: sign answers with this PKCS#8 key (several e-services of one provider share it)
  GET  /.well-known/jwks.json  the peer's response-signing key
  GET  /_control/stats         {"ok": N, "refused": [reasons], "evidence": [claims], "ids": [...]}
  POST /_control/set           JSON merged into the modes: {"tamper": true} alters signed answers,
                               {"refuse_vouchers": N} answers 401 to the next N vouchers,
                               {"delay": seconds} before answering
"""
import base64
import hashlib
import json
import sys
import threading
import time
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jsonschema
import jwt
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

PORT, SPEC, AUDIENCE, PURPOSE, PDND_JWKS, CONSUMER_JWKS = sys.argv[1:7]
AUDIT = "--no-audit" not in sys.argv
SPEC_DOC = yaml.safe_load(open(SPEC))
SERVICE = SPEC_DOC["info"]["x-api-id"]
REGISTRY = Registry().with_resource("urn:anpr", Resource.from_contents(SPEC_DOC, default_specification=DRAFT4))
if "--key" in sys.argv:
    at = sys.argv.index("--key")
    KEY = serialization.load_pem_private_key(open(sys.argv[at + 1], "rb").read(), password=None)
    KID = sys.argv[at + 2]
else:
    KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    KID = "anpr-" + uuid.uuid4().hex[:8]
LOCK = threading.Lock()
MODES = {"tamper": False, "refuse_vouchers": 0, "delay": 0}
STATS = {"ok": 0, "refused": [], "evidence": [], "ids": [], "vouchers": []}
SEEN = set()
LAST_ID = [0]

PEOPLE = {
    "RSSMRA80A01H501U": {
        "generalita": {
            "codiceFiscale": {"codFiscale": "RSSMRA80A01H501U", "validitaCF": "1"},
            "cognome": "ROSSI", "nome": "MARIO", "sesso": "M", "dataNascita": "1980-01-01",
            "luogoNascita": {"comune": {"nomeComune": "ROMA", "codiceIstat": "058091", "siglaProvinciaIstat": "RM"}},
        },
        "identificativi": {"idANPR": "AB12345CD"},
        "residenza": [{
            "tipoIndirizzo": "1",
            "indirizzo": {
                "cap": "62100",
                "comune": {"nomeComune": "MACERATA", "codiceIstat": "043023", "siglaProvinciaIstat": "MC"},
                "toponimo": {"specie": "VIA", "denominazioneToponimo": "ROMA"},
                "numeroCivico": {"numero": "10"},
            },
            "dataDecorrenzaResidenza": "2015-06-01",
        }],
    },
    "BNCLCU82B41E783L": {
        "generalita": {
            "codiceFiscale": {"codFiscale": "BNCLCU82B41E783L"},
            "cognome": "BIANCHI", "nome": "LUCIA", "sesso": "F", "dataNascita": "1982-02-01",
        },
    },
}
FAMILIES = {"RSSMRA80A01H501U": [("RSSMRA80A01H501U", "1", "INTESTATARIO SCHEDA"), ("BNCLCU82B41E783L", "2", "CONIUGE")]}


def fetch_jwks(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return {k["kid"]: k for k in json.load(r)["keys"]}


def public_key(jwk):
    if jwk["kty"] == "RSA":
        return jwt.algorithms.RSAAlgorithm.from_jwk(json.dumps(jwk))
    return jwt.algorithms.ECAlgorithm.from_jwk(json.dumps(jwk))


class Refused(Exception):
    def __init__(self, status, code, text):
        super().__init__(text)
        self.status, self.code, self.text = status, code, text


def verify(token, keys, what, audience, require):
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as e:
        raise Refused(400, "EN400", f"{what}: malformed ({e})")
    jwk = keys.get(header.get("kid"))
    if jwk is None:
        raise Refused(400, "EN400", f"{what}: unknown kid {header.get('kid')}")
    try:
        return header, jwt.decode(token, public_key(jwk), algorithms=["RS256", "ES256"], audience=audience,
                                  options={"require": require}, leeway=5)
    except jwt.PyJWTError as e:
        raise Refused(400, "EN400", f"{what}: {e}")


def check(headers, body):
    """Every check of the e-service's gateway; the voucher's claims, or raises Refused."""
    auth = headers.get("authorization") or ""
    if not auth.startswith("Bearer "):
        raise Refused(401, "EN401", "no voucher")
    try:
        header, voucher = verify(auth[7:], fetch_jwks(PDND_JWKS), "voucher", AUDIENCE, ["exp", "nbf", "iat", "jti"])
    except Refused as e:
        raise Refused(401, "EN401", e.text)
    if header.get("typ") not in ("at+jwt", "application/at+jwt"):
        raise Refused(401, "EN401", "voucher: typ must be at+jwt")
    if voucher.get("purposeId") != PURPOSE:
        raise Refused(403, "EN403", f"voucher: purpose {voucher.get('purposeId')} is not authorised")
    with LOCK:
        if MODES["refuse_vouchers"] > 0:
            MODES["refuse_vouchers"] -= 1
            raise Refused(401, "EN401", "voucher revoked")
        STATS["vouchers"].append(voucher["jti"])
    consumer = {k["kid"]: k for k in json.load(open(CONSUMER_JWKS))["keys"]}
    digest = headers.get("digest") or ""
    expected = "SHA-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode()
    if digest != expected:
        raise Refused(400, "EN400", f"Digest {digest!r} is not the body's SHA-256 (base64)")
    _, sig = verify(headers.get("agid-jwt-signature") or "", consumer, "Agid-JWT-Signature", AUDIENCE,
                    ["exp", "iat", "jti", "aud"])
    signed = {k.lower(): v for item in sig.get("signed_headers", []) for k, v in item.items()}
    if signed.get("digest") != digest:
        raise Refused(400, "EN400", "signed_headers does not cover the Digest")
    if signed.get("content-type") != headers.get("content-type"):
        raise Refused(400, "EN400", "signed_headers does not cover the Content-Type")
    if sig.get("iss") != voucher["client_id"]:
        raise Refused(400, "EN400", "Agid-JWT-Signature iss is not the voucher's client")
    if AUDIT:
        evidence = headers.get("agid-jwt-trackingevidence") or ""
        _, ev = verify(evidence, consumer, "Agid-JWT-TrackingEvidence", AUDIENCE, ["exp", "iat", "jti", "aud"])
        for claim in ("userID", "userLocation", "LoA", "purposeId", "dnonce"):
            if not ev.get(claim):
                raise Refused(400, "EN400", f"TrackingEvidence lacks {claim}")
        if ev["purposeId"] != PURPOSE:
            raise Refused(400, "EN400", "TrackingEvidence purposeId differs from the voucher's")
        bound = (voucher.get("digest") or {}).get("value")
        if bound != hashlib.sha256(evidence.encode()).hexdigest():
            raise Refused(400, "EN400", "the voucher's digest does not bind this TrackingEvidence")
        with LOCK:
            if ev["jti"] in SEEN:
                raise Refused(400, "EN400", "TrackingEvidence jti replayed")
            SEEN.add(ev["jti"])
            STATS["evidence"].append(ev)
    with LOCK:
        if sig["jti"] in SEEN:
            raise Refused(400, "EN400", "Agid-JWT-Signature jti replayed")
        SEEN.add(sig["jti"])
    return voucher


def validate(request, floor):
    schema = {"$ref": "urn:anpr#/components/schemas/RichiestaE002"}
    errors = list(jsonschema.Draft4Validator(schema, registry=REGISTRY).iter_errors(request))
    if errors:
        raise Refused(400, "EN100", "RichiestaE002: " + errors[0].message)
    ident = request["idOperazioneClient"]
    if SERVICE == "C001":
        if not ident.isdigit():
            raise Refused(400, "EN101", "idOperazioneClient must be numeric")
        if int(ident) <= floor:
            raise Refused(400, "EN102", "idOperazioneClient is not greater than the last one")
    with LOCK:
        if ident in STATS["ids"]:
            raise Refused(400, "EN102", "idOperazioneClient already used")
        STATS["ids"].append(ident)
    date = request["datiRichiesta"]["dataRiferimentoRichiesta"]
    time.strptime(date, "%Y-%m-%d")


def lookup(request):
    cf = request["criteriRicerca"].get("codiceFiscale")
    op = str(int(time.time() * 1000))
    if SERVICE == "C001" and cf in PEOPLE:
        return 200, {"idOperazioneANPR": op, "listaSoggetti": {"datiSoggetto": [PEOPLE[cf]]}}
    if SERVICE == "C021" and cf in FAMILIES:
        members = []
        for member, code, kind in FAMILIES[cf]:
            m = {k: v for k, v in PEOPLE[member].items() if k in ("generalita", "identificativi")}
            m["legameSoggetto"] = {"codiceLegame": code, "tipoLegame": kind, "dataDecorrenza": "2010-05-08"}
            members.append(m)
        return 200, {"idOperazioneANPR": op, "listaSoggetti": {"datiSoggetto": members}}
    return 404, {"idOperazioneANPR": op, "listaErrori": [{
        "codiceErroreAnomalia": "EN122", "tipoErroreAnomalia": "E",
        "testoErroreAnomalia": "Nessun soggetto trovato", "campoErroreAnomalia": "codiceFiscale"}]}


class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def send(self, status, body, consumer=None, sign=True):
        data = json.dumps(body).encode()
        ctype = "application/json" if status == 200 else "application/problem+json"
        self.send_response(status)
        self.send_header("content-type", ctype)
        if sign and consumer:
            digest = "SHA-256=" + base64.b64encode(hashlib.sha256(data).digest()).decode()
            now = int(time.time())
            token = jwt.encode({
                "iss": "anpr-" + SERVICE, "aud": consumer, "iat": now, "nbf": now, "exp": now + 60,
                "jti": str(uuid.uuid4()), "signed_headers": [{"digest": digest}, {"content-type": ctype}],
            }, KEY, algorithm="RS256", headers={"kid": KID, "typ": "JWT"})
            self.send_header("digest", digest)
            self.send_header("agid-jwt-signature", token)
            if MODES["tamper"]:
                data = data.replace(b"ROSSI", b"VERDI").replace(b"EN122", b"EN999")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/.well-known/jwks.json":
            pub = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(KEY.public_key()))
            pub.update({"kid": KID, "use": "sig", "alg": "RS256"})
            return self.send(200, {"keys": [pub]}, sign=False)
        if self.path == "/_control/stats":
            with LOCK:
                return self.send(200, STATS, sign=False)
        self.send(404, {"title": "not found"}, sign=False)

    def do_POST(self):
        n = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(n)
        if self.path == "/_control/set":
            with LOCK:
                MODES.update(json.loads(raw))
            return self.send(200, MODES, sign=False)
        if self.path != "/anpr-service-e002":
            return self.send(404, {"title": "not found"}, sign=False)
        if MODES["delay"]:
            time.sleep(float(MODES["delay"]))
        headers = {k.lower(): v for k, v in self.headers.items()}
        with LOCK:
            floor = LAST_ID[0]
        consumer = None
        try:
            voucher = check(headers, raw)
            consumer = voucher["client_id"]
            request = json.loads(raw)
            validate(request, floor)
        except Refused as e:
            with LOCK:
                STATS["refused"].append(e.text)
            return self.send(e.status, {"listaErrori": [{"codiceErroreAnomalia": e.code, "testoErroreAnomalia": e.text}]},
                             consumer)
        except (ValueError, KeyError) as e:
            with LOCK:
                STATS["refused"].append(str(e))
            return self.send(400, {"listaErrori": [{"codiceErroreAnomalia": "EN100", "testoErroreAnomalia": str(e)}]},
                             consumer)
        status, answer = lookup(request)
        with LOCK:
            STATS["ok"] += 1
        self.send(status, answer, consumer)
        if SERVICE == "C001":
            with LOCK:
                LAST_ID[0] = max(LAST_ID[0], int(request["idOperazioneClient"]))


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(PORT)), H)
    print("ready", flush=True)
    server.serve_forever()
