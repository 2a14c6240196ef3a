#!/usr/bin/python3
"""Keys and tokens for the mi-serve tests, made with PyJWT (python3-jwt),
a JWT implementation independent of mi's.

jwks.py jwks KID:PEM...          print a JWKS of the public halves of the
                                 private keys in PEM (RSA or EC P-256)
jwks.py mint ALG PEM KID CLAIMS  print a token of CLAIMS (JSON) signed with
                                 the private key in PEM; KID "" for none
"""
import json
import sys

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm, RSAAlgorithm


def private(path):
    with open(path, "rb") as f:
        return serialization.load_pem_private_key(f.read(), None)


def main():
    if sys.argv[1] == "jwks":
        keys = []
        for spec in sys.argv[2:]:
            kid, path = spec.split(":", 1)
            pub = private(path).public_key()
            if isinstance(pub, ec.EllipticCurvePublicKey):
                jwk = json.loads(ECAlgorithm.to_jwk(pub))
            else:
                jwk = json.loads(RSAAlgorithm.to_jwk(pub))
            jwk["kid"] = kid
            jwk["use"] = "sig"
            keys.append(jwk)
        print(json.dumps({"keys": keys}, indent=1))
    elif sys.argv[1] == "mint":
        alg, path, kid, claims = sys.argv[2:6]
        headers = {"kid": kid} if kid else None
        print(jwt.encode(json.loads(claims), private(path), algorithm=alg,
                         headers=headers))
    else:
        sys.exit("usage: jwks.py jwks|mint ...")


if __name__ == "__main__":
    main()
