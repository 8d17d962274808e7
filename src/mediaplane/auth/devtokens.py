"""The dev signing key: what verifies tokens when no identity provider is configured.

With none of JWT_JWKS_URL, JWT_PUBLIC_KEY, JWT_HS256_SECRET set, an EC P-256 private key is
generated once in DATA_DIR/keys/dev-jwt.pem (mode 0600) and reused on every start, so tokens
minted by `mediaplane token` survive a restart. P-256 rather than RSA: a key is generated in well
under a millisecond (RSA-2048 takes 50-150 ms, paid by every test that builds an app over a fresh
data dir), tokens stay short enough to paste into curl, and every JOSE library speaks ES256.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Sequence
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mediaplane.keys import load_or_create_file
from mediaplane.settings import Settings

DEV_KEY_FILE = "dev-jwt.pem"
DEV_ALGORITHM = "ES256"


def load_dev_key(settings: Settings) -> ec.EllipticCurvePrivateKey:
    """The dev private key, generated at DATA_DIR/keys/dev-jwt.pem on first use."""
    path = settings.data_dir / "keys" / DEV_KEY_FILE
    key = serialization.load_pem_private_key(load_or_create_file(path, _new_dev_key), None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ValueError(f"{path} is not an EC P-256 private key: delete it to make a new one")
    return key


def _new_dev_key() -> bytes:
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def dev_public_jwk(settings: Settings) -> dict[str, str]:
    """The dev public key as a JWK (with `kid`), for a dev JWKS endpoint or other services."""
    return _public_jwk(load_dev_key(settings).public_key())


def _public_jwk(public: ec.EllipticCurvePublicKey) -> dict[str, str]:
    jwk: dict[str, Any] = jwt.algorithms.ECAlgorithm.to_jwk(public, as_dict=True)
    members = {name: jwk[name] for name in ("crv", "kty", "x", "y")}
    return {**members, "kid": _thumbprint(members), "alg": DEV_ALGORITHM, "use": "sig"}


def _thumbprint(members: dict[str, str]) -> str:
    # RFC 7638: SHA-256 of the required members, sorted, without whitespace.
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode()


def mint_dev_token(
    settings: Settings,
    *,
    subject: str,
    audience: str,
    roles: Sequence[str],
    ttl_seconds: int = 3600,
) -> str:
    """A token signed with the dev key: `sub`, `aud`, `role` (the first role), `roles`, times.

    Only while the dev key is the key source: with a configured identity provider this service
    cannot mint tokens it would accept, and pretending otherwise would hide the misconfiguration.
    """
    if not settings.uses_dev_jwt_key:
        raise RuntimeError(
            "mint_dev_token signs with the dev key, but a JWT key source is configured "
            "(JWT_JWKS_URL, JWT_PUBLIC_KEY or JWT_HS256_SECRET): get tokens from that issuer"
        )
    if isinstance(roles, str):
        raise TypeError("roles must be a sequence of role names, not one str")
    if not subject:
        raise ValueError("subject must not be empty")
    if ttl_seconds <= 0:
        raise ValueError("ttl_seconds must be positive")
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": subject,
        "aud": audience,
        "roles": list(roles),
        "iat": now,
        "nbf": now,
        "exp": now + ttl_seconds,
    }
    if roles:
        claims["role"] = roles[0]
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    key = load_dev_key(settings)
    kid = _public_jwk(key.public_key())["kid"]
    return jwt.encode(claims, key, algorithm=DEV_ALGORITHM, headers={"kid": kid})
