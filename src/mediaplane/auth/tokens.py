"""Bearer JWT verification: one key source from settings, the algorithms fixed by that key.

The trap this module exists to avoid is *algorithm confusion*. A JWT names its own algorithm in
its header, and a verifier that believes it can be fooled twice over: `alg: none` skips the
signature entirely, and `alg: HS256` makes a careless verifier use the RSA/EC *public* key, which
anyone can download, as an HMAC secret, so anyone can forge tokens. Here the accepted algorithms
come only from the type of the configured key (`algorithms_for`); the header's `alg` must be one of
them or the token is refused. That is also why settings allow exactly one key source.

A token's signature, time window and issuer decide whether it is genuine (401 when not); its
audience decides whether it was meant for the API being called (403 when not).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from mediaplane.auth.devtokens import load_dev_key
from mediaplane.errors import Forbidden, Unauthenticated, Unavailable
from mediaplane.settings import Settings

VerifyingKey = (
    rsa.RSAPublicKey
    | ec.EllipticCurvePublicKey
    | ed25519.Ed25519PublicKey
    | ed448.Ed448PublicKey
    | bytes  # an HS256 shared secret
)

PUBLIC_KEY_TYPES = (
    rsa.RSAPublicKey,
    ec.EllipticCurvePublicKey,
    ed25519.Ed25519PublicKey,
    ed448.Ed448PublicKey,
)
RSA_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
# One algorithm per curve (RFC 7518 §3.4): ES256 over a P-384 key is not a thing to accept.
EC_ALGORITHM_BY_CURVE = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
MIN_RSA_BITS = 2048  # NIST SP 800-131A
MIN_HS256_SECRET_BYTES = 32  # RFC 7518 §3.2: at least the hash size


@dataclass(frozen=True)
class Principal:
    """Who a verified token speaks for, and which of the accepted audiences it matched."""

    subject: str
    audience: str
    roles: frozenset[str]
    # Kept out of repr and equality: claims may carry personal data (email, name) that must not
    # land in logs or tracebacks when a Principal is printed.
    claims: Mapping[str, Any] = field(repr=False, compare=False)


@dataclass(frozen=True)
class VerificationKey:
    """A public key (or HS256 secret) with the only algorithms a token may use with it."""

    key: VerifyingKey
    algorithms: tuple[str, ...]


class KeySource(Protocol):
    """Where verification keys come from: one fixed key, or an identity provider's JWKS."""

    def key_for(self, kid: str | None) -> VerificationKey:
        """The key that must have signed a token whose header carries `kid`."""
        ...


def algorithms_for(key: VerifyingKey) -> tuple[str, ...]:
    """The algorithms a key may verify, decided by its type and never by a token header."""
    if isinstance(key, bytes):
        return ("HS256",)
    if isinstance(key, rsa.RSAPublicKey):
        return RSA_ALGORITHMS
    if isinstance(key, ec.EllipticCurvePublicKey):
        algorithm = EC_ALGORITHM_BY_CURVE.get(key.curve.name)
        if algorithm is None:
            raise ValueError(f"unsupported EC curve {key.curve.name}: use P-256, P-384 or P-521")
        return (algorithm,)
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return ("EdDSA",)
    raise ValueError(f"unsupported key type {type(key).__name__}: use RSA, EC or Ed25519")


class StaticKey:
    """One configured key (JWT_PUBLIC_KEY, JWT_HS256_SECRET or the dev key), whatever the kid."""

    def __init__(self, key: VerifyingKey) -> None:
        self._key = VerificationKey(key, algorithms_for(key))

    def key_for(self, kid: str | None) -> VerificationKey:
        return self._key


class JwksKeys:
    """The identity provider's published keys (JWT_JWKS_URL), chosen by the token's `kid`.

    The key set is cached for `lifespan_seconds`. A token with an unknown kid (the provider just
    rotated) refetches the set, but at most once per `cooldown_seconds`, so a stream of tokens
    with made-up kids cannot turn this service into a flood against the provider.
    """

    def __init__(
        self,
        url: str,
        *,
        lifespan_seconds: float = 300,
        cooldown_seconds: float = 30,
        timeout_seconds: float = 5,
    ) -> None:
        try:
            # cache_keys stays off: PyJWKClient's per-kid cache never expires, so a key the
            # provider withdrew (rotated out, or leaked) would go on verifying tokens.
            self._client = jwt.PyJWKClient(
                url,
                cache_keys=False,
                cache_jwk_set=True,
                lifespan=lifespan_seconds,
                cooldown_duration=cooldown_seconds,
                timeout=timeout_seconds,
            )
        except jwt.PyJWKClientError as exc:
            raise ValueError(f"JWT_JWKS_URL: {exc}") from None

    def key_for(self, kid: str | None) -> VerificationKey:
        if not kid:
            raise Unauthenticated("invalid_token", "token has no kid header to pick a JWKS key")
        try:
            # Fetch (or read the cached) set first, so a broken endpoint is told apart from a
            # token whose kid is simply unknown.
            self._client.get_signing_keys()
        except (jwt.PyJWKClientError, jwt.PyJWKSetError) as exc:
            raise _jwks_unavailable(exc) from exc
        try:
            jwk = self._client.get_signing_key(kid)
        except (jwt.PyJWKClientConnectionError, jwt.PyJWKSetError) as exc:
            raise _jwks_unavailable(exc) from exc
        except jwt.PyJWKClientError:
            raise Unauthenticated("invalid_token", f"no published key has kid {kid!r}") from None
        if jwk.key_type == "oct":
            # A JWKS is public: a symmetric key in it would let anyone mint tokens.
            raise Unauthenticated("invalid_token", f"published key {kid!r} is symmetric")
        try:
            return VerificationKey(jwk.key, algorithms_for(jwk.key))
        except ValueError as exc:
            raise Unauthenticated("invalid_token", f"published key {kid!r}: {exc}") from None


def _jwks_unavailable(exc: Exception) -> Unavailable:
    # The provider's outage is not the client's fault: 503, so clients retry rather than drop
    # a perfectly good token and send the user through a new login.
    return Unavailable("jwks_unavailable", f"the identity provider's keys are unavailable: {exc}")


class TokenVerifier:
    """Turns a bearer JWT into a `Principal`, or raises `Unauthenticated` / `Forbidden`."""

    def __init__(
        self,
        keys: KeySource,
        *,
        issuer: str | None = None,
        leeway_seconds: int = 30,
        role_claims: Sequence[str] = ("role", "roles"),
    ) -> None:
        self._keys = keys
        self._issuer = issuer
        self._leeway = leeway_seconds
        self._role_claims = tuple(role_claims)

    @property
    def may_block(self) -> bool:
        """Whether `verify` may wait on the network (a JWKS fetch); only a fixed key never does."""
        return not isinstance(self._keys, StaticKey)

    def verify(self, token: str, *, audiences: Collection[str]) -> Principal:
        """Check signature, `exp`/`nbf`/`iat`, `iss` and `sub`, then match `aud`.

        `Unauthenticated` (401) when the token is not genuine, `Forbidden("wrong_audience")`
        (403) when it is but names none of `audiences`; the first of `audiences` the token
        names becomes `Principal.audience`.
        """
        if isinstance(audiences, str):
            raise TypeError("audiences must be a collection of names, not one str")
        if not audiences:
            raise ValueError("at least one accepted audience is needed")
        if not token:
            raise Unauthenticated("missing_token", "no bearer token")
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.InvalidTokenError:
            raise Unauthenticated("invalid_token", "malformed token") from None
        key = self._keys.key_for(kid if isinstance(kid, str) else None)
        claims = self._decode(token, key)

        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise Unauthenticated("invalid_token", "token has no subject (sub)")
        audience = _matching_audience(claims.get("aud"), audiences)
        return Principal(
            subject=subject,
            audience=audience,
            roles=self._roles(claims),
            claims=MappingProxyType(claims),
        )

    def _decode(self, token: str, key: VerificationKey) -> dict[str, Any]:
        try:
            return jwt.decode(
                token,
                key.key,
                # The only place algorithms are chosen: from the key, never from the header.
                algorithms=list(key.algorithms),
                issuer=self._issuer,
                leeway=self._leeway,
                options={
                    "require": ["exp", "sub"],
                    # Checked below, after the signature: a genuine token for another API is 403.
                    "verify_aud": False,
                    "enforce_minimum_key_length": True,
                },
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("token_expired", "token has expired") from None
        except jwt.InvalidIssuerError:
            raise Unauthenticated("invalid_issuer", "token was issued by someone else") from None
        except jwt.ImmatureSignatureError:
            raise Unauthenticated("invalid_token", "token is not valid yet (nbf/iat)") from None
        except jwt.InvalidAlgorithmError:
            raise Unauthenticated("invalid_token", "token algorithm not accepted") from None
        except (jwt.InvalidTokenError, jwt.InvalidKeyError) as exc:
            raise Unauthenticated("invalid_token", f"invalid token: {exc}") from None

    def _roles(self, claims: Mapping[str, Any]) -> frozenset[str]:
        roles: set[str] = set()
        for name in self._role_claims:
            value = claims.get(name)
            values = [value] if isinstance(value, str) else value if isinstance(value, list) else []
            roles.update(v for v in values if isinstance(v, str) and v)
        return frozenset(roles)


def _matching_audience(aud: object, accepted: Collection[str]) -> str:
    if aud is None:
        named: list[object] = []
    elif isinstance(aud, str):
        named = [aud]
    elif isinstance(aud, list):
        named = aud
    else:
        raise Unauthenticated("invalid_token", "aud must be a string or a list of strings")
    for audience in accepted:
        if audience in named:
            return audience
    raise Forbidden(
        "wrong_audience",
        f"token is not meant for this API (accepted audiences: {', '.join(accepted)})",
    )


def load_public_key(pem: str) -> VerifyingKey:
    """The key of JWT_PUBLIC_KEY: a PEM public key (RSA ≥ 2048 bits, EC, Ed25519)."""
    # Environment variables often carry a PEM on one line with literal "\n".
    text = pem.replace("\\n", "\n").strip()
    if "PRIVATE KEY" in text:
        raise ValueError("JWT_PUBLIC_KEY holds a private key: configure its public half only")
    try:
        key = serialization.load_pem_public_key(text.encode())
    except ValueError:
        raise ValueError("JWT_PUBLIC_KEY is not a PEM public key (BEGIN PUBLIC KEY)") from None
    if not isinstance(key, PUBLIC_KEY_TYPES):
        raise ValueError(f"JWT_PUBLIC_KEY: unsupported key type {type(key).__name__}")
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        raise ValueError(f"JWT_PUBLIC_KEY: RSA key of {key.key_size} bits, need {MIN_RSA_BITS}")
    try:
        algorithms_for(key)
    except ValueError as exc:
        raise ValueError(f"JWT_PUBLIC_KEY: {exc}") from None
    return key


def hs256_secret(secret: str) -> bytes:
    """The key of JWT_HS256_SECRET, refused when shorter than the hash (guessable offline)."""
    key = secret.encode()
    if len(key) < MIN_HS256_SECRET_BYTES:
        raise ValueError(f"JWT_HS256_SECRET must be at least {MIN_HS256_SECRET_BYTES} bytes")
    return key


def build_verifier(settings: Settings) -> TokenVerifier:
    """The verifier of the one key source in settings; the dev key when none is configured."""
    keys: KeySource
    if settings.jwt_jwks_url:
        keys = JwksKeys(settings.jwt_jwks_url)
    elif settings.jwt_public_key:
        keys = StaticKey(load_public_key(settings.jwt_public_key))
    elif settings.jwt_hs256_secret:
        keys = StaticKey(hs256_secret(settings.jwt_hs256_secret))
    else:
        keys = StaticKey(load_dev_key(settings).public_key())
    return TokenVerifier(
        keys,
        issuer=settings.jwt_issuer,
        leeway_seconds=settings.jwt_leeway_seconds,
        role_claims=settings.jwt_role_claims,
    )
