#!/usr/bin/env python3
"""Independent JOSE implementation for varco's tests (PyJWT + cryptography).

  keygen DIR KID ALG                 new key pair: DIR/KID.pem, public JWK appended to DIR/jwks.json
  mint DIR KID ALG CLAIMS [HEADER]   a signed compact JWS (CLAIMS/HEADER are JSON; "exp": "+60" = now+60)
  none CLAIMS                        an unsigned token (alg: none)
  hs-confusion DIR KID CLAIMS        HS256 signed with the RSA *public* key PEM as the secret
  verify JWKS_FILE TOKEN AUD         verify a token with a JWKS (ES256/RS256); prints its claims
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
    else:
        sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    main(sys.argv)
