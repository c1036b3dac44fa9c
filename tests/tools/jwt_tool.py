#!/usr/bin/env python3
"""Independent JOSE implementation for varco's tests (PyJWT + cryptography).

  keygen DIR KID ALG                 new key pair: DIR/KID.pem, public JWK appended to DIR/jwks.json
  mint DIR KID ALG CLAIMS [HEADER]   a signed compact JWS (CLAIMS/HEADER are JSON; "exp": "+60" = now+60)
  none CLAIMS                        an unsigned token (alg: none)
  hs-confusion DIR KID CLAIMS        HS256 signed with the RSA *public* key PEM as the secret
  verify JWKS_FILE TOKEN AUD         verify a token with a JWKS (ES256/RS256); prints its claims
  cert DIR KID                       a CA (DIR/ca.pem, made once) certifies KID's key; prints x5c[0]
  modi DIR KID ALG AUD CT BODYFILE [HEADER] [CLAIMS]
                                     ModI INTEGRITY_REST: prints {"digest", "signature"} for the body
  audit DIR KID ALG AUD CLAIMS       AUDIT_REST: prints {"evidence", "digest": sha256 hex of the JWS}
  verify-modi JWKS_FILE DIGEST SIG AUD BODYFILE CT
                                     checks a ModI response signature; prints its claims
"""
import base64
import hashlib
import hmac
import json
import os
import sys
import time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims_of(text: str) -> dict:
    claims = json.loads(text)
    now = int(time.time())
    for k in ("exp", "nbf", "iat"):
        v = claims.get(k)
        if isinstance(v, str) and v[:1] in "+-":
            claims[k] = now + int(v)
    return claims


def keygen(d, kid, alg):
    if alg.startswith("ES"):
        key = ec.generate_private_key(ec.SECP256R1())
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": kid, "alg": alg, "use": "sig"})
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    with open(os.path.join(d, kid + ".pem"), "wb") as f:
        f.write(pem)
    with open(os.path.join(d, kid + ".pub.pem"), "wb") as f:
        f.write(key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    path = os.path.join(d, "jwks.json")
    jwks = json.load(open(path)) if os.path.exists(path) else {"keys": []}
    jwks["keys"].append(jwk)
    with open(path, "w") as f:
        json.dump(jwks, f)


def mint(d, kid, alg, claims, header=None):
    key = open(os.path.join(d, kid + ".pem"), "rb").read()
    headers = {"kid": kid}
    headers.update(json.loads(header) if header else {})
    headers = {k: v for k, v in headers.items() if v is not None}  # "kid": null drops the kid
    return jwt.encode(claims_of(claims), key, algorithm=alg, headers=headers)


def none(claims):
    head = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return head + "." + b64(json.dumps(claims_of(claims)).encode()) + "."


def hs_confusion(d, kid, claims):
    secret = open(os.path.join(d, kid + ".pub.pem"), "rb").read()
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    body = b64(json.dumps(claims_of(claims)).encode())
    sig = hmac.new(secret, (head + "." + body).encode(), hashlib.sha256).digest()
    return head + "." + body + "." + b64(sig)


def cert(d, kid):
    import datetime
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key_path, ca_path = os.path.join(d, "ca.key.pem"), os.path.join(d, "ca.pem")
    if not os.path.exists(ca_path):
        ca_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "varco test CA")])
        ca = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(ca_key.public_key())
              .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
              .not_valid_after(now + datetime.timedelta(days=30))
              .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
              .sign(ca_key, hashes.SHA256()))
        open(ca_key_path, "wb").write(ca_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        open(ca_path, "wb").write(ca.public_bytes(serialization.Encoding.PEM))
    ca_key = serialization.load_pem_private_key(open(ca_key_path, "rb").read(), None)
    ca = x509.load_pem_x509_certificate(open(ca_path, "rb").read())
    key = serialization.load_pem_private_key(open(os.path.join(d, kid + ".pem"), "rb").read(), None)
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "consumer " + kid)]))
            .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=10))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256()))
    return base64.b64encode(leaf.public_bytes(serialization.Encoding.DER)).decode()


def modi(d, kid, alg, aud, ct, body_file, header=None, extra=None):
    body = open(body_file, "rb").read()
    digest = "SHA-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode()
    claims = {"aud": aud, "iat": "+0", "exp": "+60", "jti": os.urandom(12).hex(), "iss": "consumer",
              "signed_headers": [{"digest": digest}, {"content-type": ct}]}
    claims.update(json.loads(extra) if extra else {})
    hdr = {"typ": "JWT"}
    hdr.update(json.loads(header) if header else {})
    return json.dumps({"digest": digest, "signature": mint(d, kid, alg, json.dumps(claims), json.dumps(hdr))})


def audit(d, kid, alg, aud, claims):
    c = {"aud": aud, "iat": "+0", "exp": "+60", "jti": os.urandom(12).hex(), "iss": "consumer"}
    c.update(json.loads(claims))
    evidence = mint(d, kid, alg, json.dumps(c), json.dumps({"typ": "JWT"}))
    return json.dumps({"evidence": evidence, "digest": hashlib.sha256(evidence.encode()).hexdigest()})


def verify_modi(jwks_file, digest, sig, aud, body_file, ct):
    body = open(body_file, "rb").read()
    want = "SHA-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode()
    if digest != want:
        sys.exit("digest mismatch: %s != %s" % (digest, want))
    jwks = json.load(open(jwks_file))
    kid = jwt.get_unverified_header(sig).get("kid")
    jwk = next(k for k in jwks["keys"] if k.get("kid") == kid)
    claims = jwt.decode(sig, key=jwt.PyJWK(jwk).key, algorithms=["ES256", "RS256"], audience=aud)
    signed = {k: v for h in claims["signed_headers"] for k, v in h.items()}
    if signed.get("digest") != digest or signed.get("content-type") != ct:
        sys.exit("signed_headers do not match: %r" % signed)
    return json.dumps(claims)


def main(argv):
    cmd = argv[1]
    if cmd == "keygen":
        keygen(argv[2], argv[3], argv[4])
    elif cmd == "mint":
        print(mint(argv[2], argv[3], argv[4], argv[5], argv[6] if len(argv) > 6 else None))
    elif cmd == "none":
        print(none(argv[2]))
    elif cmd == "verify":
        jwks = json.load(open(argv[2]))
        kid = jwt.get_unverified_header(argv[3]).get("kid")
        jwk = next(k for k in jwks["keys"] if k.get("kid") == kid)
        key = jwt.PyJWK(jwk).key
        print(json.dumps(jwt.decode(argv[3], key=key, algorithms=["ES256", "RS256"], audience=argv[4])))
    elif cmd == "hs-confusion":
        print(hs_confusion(argv[2], argv[3], argv[4]))
    elif cmd == "cert":
        print(cert(argv[2], argv[3]))
    elif cmd == "modi":
        print(modi(*argv[2:]))
    elif cmd == "audit":
        print(audit(*argv[2:]))
    elif cmd == "verify-modi":
        print(verify_modi(*argv[2:]))
    else:
        sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    main(sys.argv)
