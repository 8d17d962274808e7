"""Test keys and tokens: real keys generated once per run, real JWTs signed with them.

Also the two tokens no honest library will sign, built by hand: `alg: none`, and HS256 "signed"
with a public key used as the HMAC secret (PyJWT refuses to create it, attackers do not).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from dataclasses import dataclass
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from mediaplane.auth.tokens import StaticKey, TokenVerifier, VerifyingKey
from mediaplane.settings import Settings

HS256_SECRET = b"test-hs256-secret-of-at-least-32-bytes"
OMIT: Any = object()
"""Pass as a claim value to `claims()` to leave that claim out."""

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


@dataclass(frozen=True)
class SigningKey:
    """A key the tests sign with: an asymmetric private key, or the HS256 secret."""

    private: PrivateKey | bytes
    algorithm: str
    kid: str

    @property
    def public(self) -> VerifyingKey:
        return self.private if isinstance(self.private, bytes) else self.private.public_key()

    def public_pem(self) -> str:
        assert not isinstance(self.public, bytes)
        return self.public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()

    def public_jwk(self) -> dict[str, Any]:
        algorithm = jwt.get_algorithm_by_name(self.algorithm)
        jwk: dict[str, Any] = json.loads(algorithm.to_jwk(self.public))
        return {**jwk, "kid": self.kid, "use": "sig"}

    def sign(
        self, payload: dict[str, Any], *, algorithm: str | None = None, kid: str | None = None
    ) -> str:
        return jwt.encode(
            payload,
            self.private,
            algorithm=algorithm or self.algorithm,
            headers={"kid": kid or self.kid},
        )


@cache
def rsa_key(kid: str = "rsa-1") -> SigningKey:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return SigningKey(private, "RS256", kid)


@cache
def ec_key(kid: str = "ec-1", curve: str = "P-256") -> SigningKey:
    curves = {"P-256": (ec.SECP256R1(), "ES256"), "P-384": (ec.SECP384R1(), "ES384")}
    curve_obj, algorithm = curves[curve]
    return SigningKey(ec.generate_private_key(curve_obj), algorithm, kid)


@cache
def ed25519_key(kid: str = "ed-1") -> SigningKey:
    return SigningKey(ed25519.Ed25519PrivateKey.generate(), "EdDSA", kid)


def hs256_key(kid: str = "hs-1") -> SigningKey:
    return SigningKey(HS256_SECRET, "HS256", kid)


def claims(**overrides: Any) -> dict[str, Any]:
    """A valid payload for audience `media`, valid for 5 minutes; `claim=OMIT` drops one."""
    now = int(time.time())
    payload: dict[str, Any] = {
        "sub": str(uuid.uuid4()),
        "aud": "media",
        "iat": now,
        "nbf": now,
        "exp": now + 300,
    }
    payload.update(overrides)
    return {name: value for name, value in payload.items() if value is not OMIT}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _segments(header: dict[str, Any], payload: dict[str, Any]) -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"


def unsigned_token(payload: dict[str, Any]) -> str:
    """`alg: none` with an empty signature."""
    return _segments({"alg": "none", "typ": "JWT"}, payload) + "."


def hmac_token(payload: dict[str, Any], secret: bytes, *, kid: str | None = None) -> str:
    """HS256 over any bytes as the secret, a public key's PEM included."""
    header: dict[str, Any] = {"alg": "HS256", "typ": "JWT"}
    if kid:
        header["kid"] = kid
    signing_input = _segments(header, payload)
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def verifier_for(key: SigningKey, **options: Any) -> TokenVerifier:
    """A verifier trusting just `key` (issuer, leeway_seconds, role_claims as keywords)."""
    return TokenVerifier(StaticKey(key.public), **options)


def make_settings(data_dir: Path, **values: Any) -> Settings:
    """Settings that ignore the environment and `.env`: only what the test says."""
    return Settings(_env_file=None, data_dir=data_dir, **values)  # type: ignore[call-arg]


class JwksServer:
    """A JWKS endpoint on 127.0.0.1 in a thread; set `keys` to change what it publishes."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.hits = 0
        jwks = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                jwks.hits += 1
                body = json.dumps({"keys": jwks.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/.well-known/jwks.json"

    def publish(self, *keys: SigningKey) -> None:
        self.keys = [key.public_jwk() for key in keys]

    def __enter__(self) -> JwksServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
